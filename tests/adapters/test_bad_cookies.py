"""Hostile and stale cookies: a fresh session every time, never a store lookup, never a 500.

Each bad cookie is built from the id of a real, stored session, so a middleware that
looked the id up (or used it as a path) would find something and show it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from sessionguard.cookie import Signer
from tests.trees import tree

from .apps import SECRET, CountingFileStore, SetCookie, cookie_header, session_set_cookie
from .conftest import ClientFactory

SIGNATURE_SHAPE = "A" * 43

BAD_COOKIES: dict[str, Callable[[SetCookie], str | bytes]] = {
    "forged_signature": lambda real: f"session={real.session_id}.{SIGNATURE_SHAPE}",
    "unsigned_id": lambda real: f"session={real.session_id}",
    "garbled": lambda real: "session=%%%not*a;;cookie==at all",
    "oversized_10kb": lambda real: f"session={real.value}{'a' * 10 * 1024}",
    "path_traversal": lambda real: "session=../../etc/passwd",
    "path_traversal_signed_shape": lambda real: f"session=../../etc/passwd.{SIGNATURE_SHAPE}",
    "percent_encoded_nul": lambda real: f"session={real.session_id}%00.{real.value[41:]}",
    "raw_nul": lambda real: f"session={real.session_id}\x00.{real.value[41:]}".encode(),
    "non_ascii": lambda real: f"session={real.value}\u00e9\u4e2d".encode(),
    "retired_key": lambda real: f"session={Signer('a-retired-key').sign(real.session_id)}",
}


@pytest.fixture(params=list(BAD_COOKIES))
def bad_cookie(request: pytest.FixtureRequest) -> Callable[[SetCookie], str | bytes]:
    return BAD_COOKIES[request.param]


async def test_bad_cookie_gets_fresh_session_without_store_lookup(
    make_client: ClientFactory,
    store: CountingFileStore,
    bad_cookie: Callable[[SetCookie], str | bytes],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    real = session_set_cookie(await client.get("/count"))
    assert real is not None
    await client.get("/count", cookie=cookie_header(real.value))  # the real one has count 2
    before = tree(tmp_path)
    store.loads = 0

    with caplog.at_level(logging.DEBUG, logger="sessionguard"):
        response = await client.get("/count", cookie=bad_cookie(real))

    assert response.status_code == 200
    assert caplog.records, "a rejected cookie is worth a line in the security log"
    assert real.session_id not in caplog.text
    assert response.json() == {"count": 1}
    assert store.loads == 0
    fresh = session_set_cookie(response)
    assert fresh is not None and fresh.session_id != real.session_id
    # The only changes on disk: the fresh session's record, its fan-out directories and
    # the stripe lock file its save took; nothing outside the store directory.
    after = tree(tmp_path)
    changed = {path for path in after.keys() | before.keys() if after.get(path) != before.get(path)}
    record = Path(store._locate(fresh.session_id)[1]).relative_to(tmp_path)
    locks = Path(store.directory, ".locks").relative_to(tmp_path)
    unexpected = changed - {str(record), *map(str, record.parents)}
    assert all(Path(path).parent == locks for path in unexpected), unexpected
    assert str(record) in changed
    response = await client.get("/read", cookie=cookie_header(real.value))
    assert response.json() == {"count": 2}


async def test_bad_cookie_on_read_only_request_is_left_alone(
    make_client: ClientFactory,
    store: CountingFileStore,
    bad_cookie: Callable[[SetCookie], str | bytes],
) -> None:
    client = make_client()
    real = session_set_cookie(await client.get("/count"))
    assert real is not None
    store.loads = 0
    response = await client.get("/read", cookie=bad_cookie(real))
    assert response.status_code == 200
    assert response.json() == {}
    assert store.loads == 0
    # Not verified as ours, so not ours to delete (another app's "session", say).
    assert session_set_cookie(response) is None


async def test_cookie_signed_by_previous_key_is_accepted_and_re_signed_by_new_key(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    old_app = make_client(secret_key="the-old-key")
    old = session_set_cookie(await old_app.get("/count"))
    assert old is not None
    assert old.value == Signer("the-old-key").sign(old.session_id)

    rotated = make_client(secret_key=["the-new-key", "the-old-key"])
    response = await rotated.get("/count", cookie=cookie_header(old.value))
    assert response.json() == {"count": 2}
    renewed = session_set_cookie(response)
    assert renewed is not None
    assert renewed.value == Signer("the-new-key").sign(old.session_id)

    response = await rotated.get("/count", cookie=cookie_header(renewed.value))
    assert response.json() == {"count": 3}
    # Once the old key is retired, its cookies lead to a fresh session.
    retired = make_client(secret_key="the-new-key")
    response = await retired.get("/read", cookie=cookie_header(old.value))
    assert response.json() == {}


async def test_valid_cookie_among_other_cookies_and_quotes_is_found(
    make_client: ClientFactory,
) -> None:
    client = make_client(secret_key=SECRET)
    real = session_set_cookie(await client.get("/count"))
    assert real is not None
    header = f'theme=dark; session="{real.value}"; other=%00'
    response = await client.get("/count", cookie=header)
    assert response.json() == {"count": 2}
