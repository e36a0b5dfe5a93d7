"""Login rotation that nobody holding the pre-login id can ride, on real servers.

The attack (issue 10, findings 1 to 3): an attacker fixates a valid session id X in the
victim's browser and keeps slow requests of their own in flight on X. The victim logs
in: `regenerate()` moves X to a new id Y and leaves a short-lived forward pointer at X.
Then the attacker's requests finish. Here each slow request is parked by the test app
between loading X and saving (`hold=`), on gunicorn and on uvicorn, and released after
the login response:

* the attacker's write is refused (409, no Set-Cookie) and nothing of it reaches Y;
* a read-only request on X sets no cookie (it would log the victim out by putting X back)
  and does not extend the pointer's 30 s lifetime (its refresh was due);
* the victim's session Y holds exactly what the login made of X.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sessionguard.stores.file import FileStore
from tests.record_files import deadline_of, framed, payload_of, record_path

from .conftest import ServerKind, SessionEnv, StartServer
from .test_torture import call, init_session, new_async_client, read_session, wait_for

pytestmark = pytest.mark.integration

GRACE = 30  # the core's regenerate_grace


def age_the_record(store_dir: Path, session_id: str, seconds: float) -> None:
    """Move the record's deadline `seconds` earlier, as if it was last written that long ago,
    so that a read-only request's refresh is due."""
    record = record_path(FileStore(store_dir), session_id)
    record.write_bytes(framed(payload_of(record), deadline_of(record) - seconds))


@pytest.mark.parametrize(("kind", "workers"), [("gunicorn", 4), ("uvicorn", 2)])
async def test_requests_in_flight_on_the_pre_login_id_cannot_ride_the_login(
    kind: ServerKind, workers: int, start_server: StartServer, session_env: SessionEnv
) -> None:
    server = start_server(kind, workers=workers)
    fixated, old_id = init_session(server.base_url)  # minted by the attacker, planted
    age_the_record(session_env.store_dir, old_id, 600)
    hold_dir = session_env.hold_dir

    async with new_async_client(server.base_url) as client:
        ride = asyncio.create_task(
            call(client, fixated, "/set", k="csrf_token", v="attacker-knows-it", hold="ride")
        )
        poll = asyncio.create_task(call(client, fixated, "/get", hold="poll"))
        try:
            await wait_for(
                lambda: all((hold_dir / f"{n}.loaded").exists() for n in ("ride", "poll")),
                "the attacker's requests to load the pre-login session",
            )
            login = await call(client, fixated, "/login", v="victim")
            logged_in_at = time.time()
        finally:
            for name in ("ride", "poll"):
                (hold_dir / f"{name}.go").touch()
        ridden, polled = await asyncio.gather(ride, poll)

    assert login["status"] == 200, login
    [new_cookie] = login["cookies"]
    new_id = login["cookie_ids"][0]
    assert new_id != old_id

    assert ridden["status"] == 409, ridden
    assert ridden["cookies"] == [], "a refused write must not touch the victim's cookie"
    assert polled["status"] == 200 and polled["cookies"] == [], polled
    assert read_session(server.base_url, new_cookie) == {"init": "1", "user": "victim"}

    pointer = record_path(FileStore(session_env.store_dir), old_id)
    assert deadline_of(pointer) <= logged_in_at + GRACE, "the pointer was extended"
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
async def test_with_carry_in_flight_writes_reach_the_new_session(
    kind: ServerKind, start_server: StartServer, session_env: SessionEnv
) -> None:
    """The opt-in, and its documented trade-off: whoever holds the old id writes too."""
    server = start_server(kind, workers=4 if kind == "gunicorn" else 2)
    cookie, _ = init_session(server.base_url)
    hold_dir = session_env.hold_dir

    async with new_async_client(server.base_url) as client:
        held = asyncio.create_task(call(client, cookie, "/set", k="cart", v="book", hold="own"))
        try:
            await wait_for(lambda: (hold_dir / "own.loaded").exists(), "the held request")
            login = await call(client, cookie, "/login", v="alice", carry="1")
        finally:
            (hold_dir / "own.go").touch()
        carried = await held

    assert carried["status"] == 200 and carried["cookies"] == [], carried
    [new_cookie] = login["cookies"]
    assert read_session(server.base_url, new_cookie) == {
        "init": "1",
        "user": "alice",
        "cart": "book",
    }
