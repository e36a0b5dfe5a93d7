"""Corrupt session files planted under a real app, for both policies and both adapters.

Each case damages the real record file of a session created through the app in place,
as a crashed foreign writer or a migration script would: the file gets a fresh mtime.
The bytes decide that the record is corrupt; nothing about the file's times may make it
look expired instead (sessionguard 0.1 kept the deadline in the mtime, and did).
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sessionguard import CorruptionEvent, CorruptionPolicy, CorruptReason
from sessionguard.ops import key_hash
from sessionguard.policy import Action

from .apps import AppClient, CountingFileStore, SetCookie, cookie_header, session_set_cookie
from .conftest import ClientFactory


def _flip_one_bit(good: bytes) -> bytes:
    return good[:-1] + bytes([good[-1] ^ 0x01])


CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], CorruptReason]] = {
    "zero_byte": (lambda good: b"", CorruptReason.EMPTY),
    "truncated": (lambda good: good[: len(good) - 3], CorruptReason.TRUNCATED),
    "garbage": (lambda good: b"\x13\x37 not a session record \xff\xfe", CorruptReason.BAD_MAGIC),
    "legacy_pickle": (
        lambda good: pickle.dumps({"count": 2, "user": "mallory"}),
        CorruptReason.LEGACY_PICKLE,
    ),
    "flipped_bit": (_flip_one_bit, CorruptReason.CHECKSUM_MISMATCH),
    # Within the first 24 bytes: where the record's header (and its deadline) is.
    "truncated_header": (lambda good: good[:12], CorruptReason.TRUNCATED),
    "flipped_header_bit": (
        lambda good: good[:17] + bytes([good[17] ^ 0x40]) + good[18:],
        CorruptReason.CHECKSUM_MISMATCH,
    ),
}


async def _create(client: AppClient, requests: int) -> SetCookie:
    """A session through the app with count == `requests`."""
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    for _ in range(requests - 1):
        await client.get("/count", cookie=cookie_header(cookie.value))
    return cookie


def _plant(store: CountingFileStore, session_id: str, damage: Callable[[bytes], bytes]) -> bytes:
    """Damage the record of `session_id` in place (a fresh mtime); return the bytes."""
    path = store._locate(session_id)[1]
    with open(path, "rb") as file:
        bad = damage(file.read())
    with open(path, "r+b") as file:
        file.truncate(0)
        file.write(bad)
    assert os.stat(path).st_mtime <= time.time()
    return bad


def _assert_logged_without_id(
    caplog: pytest.LogCaptureFixture, reason: CorruptReason, cookie: SetCookie
) -> None:
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(reason in m and key_hash(cookie.session_id) in m for m in messages), messages
    assert cookie.session_id not in caplog.text
    assert cookie.value.split(".", 1)[1] not in caplog.text


@pytest.fixture(params=list(CORRUPTIONS))
def corruption(request: pytest.FixtureRequest) -> tuple[Callable[[bytes], bytes], CorruptReason]:
    return CORRUPTIONS[request.param]


async def test_reset_gives_app_a_fresh_session_and_removes_the_record(
    make_client: ClientFactory,
    store: CountingFileStore,
    corruption: tuple[Callable[[bytes], bytes], CorruptReason],
    caplog: pytest.LogCaptureFixture,
) -> None:
    damage, reason = corruption
    events: list[CorruptionEvent] = []
    client = make_client(policy=CorruptionPolicy("reset", on_event=events.append))
    bystander = await _create(client, requests=3)
    victim = await _create(client, requests=2)
    _plant(store, victim.session_id, damage)
    calls = len(client.calls)
    with caplog.at_level(logging.WARNING, logger="sessionguard"):
        response = await client.get("/count", cookie=cookie_header(victim.value))
    assert response.status_code == 200
    assert response.json() == {"count": 1}  # the app ran, on an empty session
    assert len(client.calls) == calls + 1
    replaced = session_set_cookie(response)
    assert replaced is not None and replaced.value
    assert replaced.session_id != victim.session_id
    assert not os.path.exists(store._locate(victim.session_id)[1])
    assert [(e.reason, e.key_hash) for e in events] == [(reason, key_hash(victim.session_id))]
    _assert_logged_without_id(caplog, reason, victim)
    # The session nobody damaged keeps its data.
    response = await client.get("/read", cookie=cookie_header(bystander.value))
    assert response.json() == {"count": 3}


async def test_reset_on_read_only_request_clears_the_stale_cookie(
    make_client: ClientFactory,
    store: CountingFileStore,
    corruption: tuple[Callable[[bytes], bytes], CorruptReason],
) -> None:
    damage, _ = corruption
    client = make_client(policy=CorruptionPolicy("reset"))
    victim = await _create(client, requests=2)
    _plant(store, victim.session_id, damage)
    response = await client.get("/read", cookie=cookie_header(victim.value))
    assert response.status_code == 200
    assert response.json() == {}
    cleared = session_set_cookie(response)
    assert cleared is not None and cleared.clears
    assert not os.path.exists(store._locate(victim.session_id)[1])


async def test_reset_with_quarantine_moves_the_exact_bytes_aside(
    make_client: ClientFactory,
    store: CountingFileStore,
    corruption: tuple[Callable[[bytes], bytes], CorruptReason],
    tmp_path: Path,
) -> None:
    damage, reason = corruption
    quarantine = tmp_path / "quarantine"
    client = make_client(policy=CorruptionPolicy("reset", quarantine_dir=quarantine))
    victim = await _create(client, requests=2)
    bad = _plant(store, victim.session_id, damage)
    response = await client.get("/count", cookie=cookie_header(victim.value))
    assert response.status_code == 200
    assert response.json() == {"count": 1}
    assert not os.path.exists(store._locate(victim.session_id)[1])
    (copy,) = quarantine.iterdir()
    assert copy.name.startswith(f"{key_hash(victim.session_id)}-{reason}-")
    assert victim.session_id not in copy.name
    assert copy.read_bytes() == bad


async def test_reject_answers_400_clears_cookie_and_never_calls_app(
    make_client: ClientFactory,
    store: CountingFileStore,
    corruption: tuple[Callable[[bytes], bytes], CorruptReason],
    caplog: pytest.LogCaptureFixture,
) -> None:
    damage, reason = corruption
    events: list[CorruptionEvent] = []
    client = make_client(policy=CorruptionPolicy("reject", on_event=events.append))
    bystander = await _create(client, requests=3)
    victim = await _create(client, requests=2)
    _plant(store, victim.session_id, damage)
    calls = len(client.calls)
    with caplog.at_level(logging.WARNING, logger="sessionguard"):
        response = await client.get("/count", cookie=cookie_header(victim.value))
    assert response.status_code == 400
    assert response.text == "Invalid session data\n"
    cleared = session_set_cookie(response)
    assert cleared is not None and cleared.clears
    assert len(client.calls) == calls
    assert [(e.reason, e.key_hash) for e in events] == [(reason, key_hash(victim.session_id))]
    _assert_logged_without_id(caplog, reason, victim)
    response = await client.get("/read", cookie=cookie_header(bystander.value))
    assert response.json() == {"count": 3}


async def test_callable_policy_chooses_per_reason(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    seen: list[CorruptReason] = []

    def choose(event: CorruptionEvent) -> Action:
        seen.append(event.reason)
        return "reject" if event.reason is CorruptReason.LEGACY_PICKLE else "reset"

    client = make_client(policy=CorruptionPolicy(choose))
    pickled = await _create(client, requests=1)
    flipped = await _create(client, requests=1)
    _plant(store, pickled.session_id, CORRUPTIONS["legacy_pickle"][0])
    _plant(store, flipped.session_id, CORRUPTIONS["flipped_bit"][0])
    calls = len(client.calls)

    response = await client.get("/count", cookie=cookie_header(pickled.value))
    assert response.status_code == 400
    assert len(client.calls) == calls

    response = await client.get("/count", cookie=cookie_header(flipped.value))
    assert response.status_code == 200
    assert response.json() == {"count": 1}
    assert len(client.calls) == calls + 1
    assert seen == [CorruptReason.LEGACY_PICKLE, CorruptReason.CHECKSUM_MISMATCH]
