"""Write access to the store alone cannot forge a session (issue 10, finding 4), under both
adapters: every record the middleware writes is signed with a key derived from its
secret, and a record signed otherwise is corrupt (`bad_signature`), never a session.

Forged records are built by hand from the documented envelope layout, the way someone
with write access to the store but not the secret would build them.
"""

from __future__ import annotations

import hashlib
import struct
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from sessionguard import CorruptionEvent, CorruptionPolicy, CorruptReason
from tests.record_files import payload_of

from .apps import CountingFileStore, cookie_header, session_set_cookie
from .conftest import ClientFactory


def forged(data: dict[str, object], *, key: bytes | None) -> bytes:
    body: bytes = msgpack.packb([time.time(), None, data], use_bin_type=True)
    header = struct.pack(">2sBBI", b"SG", 2 if key else 1, 0, len(body))
    mac = hashlib.blake2b(header + body, digest_size=16, key=key).digest() if key else b""
    return header + hashlib.blake2b(header + mac + body, digest_size=16).digest() + mac + body


async def test_the_middleware_signs_what_it_writes(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    client = make_client()
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    envelope = payload_of(Path(store._locate(cookie.session_id)[1]))
    assert envelope[:3] == b"SG\x02"  # format version 2: signed


@pytest.mark.parametrize(
    ("record", "options", "reason"),
    [
        (forged({"role": "admin"}, key=b"x" * 32), {}, CorruptReason.BAD_SIGNATURE),
        (
            forged({"role": "admin"}, key=None),
            {"unsigned_records": "reject"},
            CorruptReason.UNSIGNED,
        ),
    ],
    ids=["signed-with-another-key", "unsigned-when-refused"],
)
async def test_a_forged_record_is_corrupt_and_never_becomes_a_session(
    make_client: ClientFactory,
    store: CountingFileStore,
    record: bytes,
    options: dict[str, Any],
    reason: CorruptReason,
) -> None:
    events: list[CorruptionEvent] = []
    client = make_client(policy=CorruptionPolicy("reset", on_event=events.append), **options)
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    store.save(cookie.session_id, record, expires_at=4_000_000_000.0)

    response = await client.get("/read", cookie=cookie_header(cookie.value))

    assert response.json() == {}
    assert [e.reason for e in events] == [reason]


async def test_unsigned_records_of_0_1_are_read_by_default(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    """The upgrade from 0.1 logs nobody out: its unsigned records are read (and signed at
    their next write) unless `unsigned_records="reject"`."""
    client = make_client()
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    store.save(cookie.session_id, forged({"count": 5}, key=None), expires_at=4_000_000_000.0)

    response = await client.get("/count", cookie=cookie_header(cookie.value))

    assert response.json() == {"count": 6}
    assert payload_of(Path(store._locate(cookie.session_id)[1]))[:3] == b"SG\x02"
