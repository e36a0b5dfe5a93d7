"""A frozen database answers 503 within a bound, through both middlewares, and the app
recovers by itself with the data intact.

A frozen server keeps its TCP connections open and never answers: PostgreSQL with the
postmaster and every backend SIGSTOPped (a hung host or a network partition looks the
same to a client). Its SQLite analogue is a database file whose write lock another
process holds. Each test runs the real apps of `test_outages.py` on a database of its
own, so freezing it harms no other test.

The bounds the README may state, which `SQLStore` is built to (see its docstring):

- PostgreSQL: 1 s (`io_timeout`) when the request's pooled connection is stuck, 2 s
  (`connect_timeout`) when it must open a new one; a request fails at its first store
  call, so its 503 comes within 2 s.
- SQLite: reads go on (WAL); a write waits out the 5 s busy timeout, then 503.

The tests allow three times as long, for a noisy 2-core machine. Should a request hang
anyway, the database is thawed after a while so that the test fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sessionguard.stores.sql import SQLStore
from tests.integration.test_outages import assert_unavailable, flask_app, starlette_app
from tests.servers import PostgresServer

pytestmark = pytest.mark.integration

POSTGRES_BOUND = 2.0  # seconds: max(io_timeout, connect_timeout) at their defaults
SQLITE_BOUND = 5.0  # seconds: SQLite's busy timeout as SQLStore sets it
SLACK = 3.0

# Holds SQLite's write lock on the database at argv[1] until its stdin is closed.
HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def locked_sqlite(path: Path) -> Iterator[Callable[[], None]]:
    """Another process holds the database's write lock inside; yields what releases it
    early (any thread may call it, as often as it likes)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    released = threading.Lock()

    def release() -> None:
        assert holder.stdin is not None
        with released:  # the holder's read ends: it exits and the lock is released
            holder.stdin.close()

    try:
        # Bounded: the holder prints once it has the lock, or exits (and stdout ends).
        assert holder.stdout.readline() == b"locked\n"
        yield release
    finally:
        release()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(timeout=10)
        holder.stdout.close()


@contextlib.contextmanager
def frozen_postgres(server: PostgresServer) -> Iterator[Callable[[], None]]:
    server.freeze()
    try:
        yield server.thaw
    finally:
        server.thaw()


@dataclass
class Frozen:
    """A store; how to freeze its database (a context manager yielding what thaws it);
    the design bound; how many requests in a row to time while frozen (PostgreSQL: the
    pooled connection's, then a new one's)."""

    store: SQLStore
    freezing: Callable[[], contextlib.AbstractContextManager[Callable[[], None]]]
    bound: float
    requests: int

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Frozen inside; thawed after `requests` times the allowed time at the latest,
        so that a request that would wait for ever fails the test instead."""
        with self.freezing() as thaw:
            guard = threading.Timer(self.requests * SLACK * self.bound, thaw)
            guard.start()
            try:
                yield
            finally:
                guard.cancel()
                guard.join()


@pytest.fixture(params=["postgres", "sqlite"])
async def frozen(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Frozen]:
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            # A server of this test's own, found as the shared one is (or skipped).
            shared: PostgresServer = request.getfixturevalue("postgres_server")
            server = stack.enter_context(PostgresServer.temporary(shared.bindir))
            store = SQLStore(server.url)
            yield Frozen(store, lambda: frozen_postgres(server), POSTGRES_BOUND, 2)
        else:
            path = tmp_path / "sessions.db"
            store = SQLStore(f"sqlite:///{path}")
            yield Frozen(store, lambda: locked_sqlite(path), SQLITE_BOUND, 1)
        await store.aclose()


def assert_within(started: float, bound: float) -> None:
    elapsed = time.monotonic() - started
    assert elapsed < SLACK * bound, f"the 503 took {elapsed:.2f}s; designed for {bound}s"


async def test_frozen_database_answers_503_within_the_bound_then_recovers_asgi(
    frozen: Frozen,
) -> None:
    transport = httpx.ASGITransport(starlette_app(frozen.store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as client:
        assert (await client.get("/bump")).json() == {"n": 1}

        with frozen.frozen():
            for _ in range(frozen.requests):
                started = time.monotonic()
                response = await client.get("/bump")
                assert_within(started, frozen.bound)
                assert_unavailable(response)

        assert (await client.get("/read")).json() == {"n": 1}
        assert (await client.get("/bump")).json() == {"n": 2}


def test_frozen_database_answers_503_within_the_bound_then_recovers_wsgi(
    frozen: Frozen,
) -> None:
    transport = httpx.WSGITransport(app=flask_app(frozen.store))
    with httpx.Client(transport=transport, base_url="http://t", timeout=60) as client:
        assert client.get("/bump").json() == {"n": 1}

        with frozen.frozen():
            for _ in range(frozen.requests):
                started = time.monotonic()
                response = client.get("/bump")
                assert_within(started, frozen.bound)
                assert_unavailable(response)

        assert client.get("/read").json() == {"n": 1}
        assert client.get("/bump").json() == {"n": 2}


async def test_a_locked_sqlite_database_still_serves_reads(tmp_path: Path) -> None:
    """WAL: another process's write lock holds up writes only."""
    path = tmp_path / "sessions.db"
    store = SQLStore(f"sqlite:///{path}")
    transport = httpx.ASGITransport(starlette_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as client:
        assert (await client.get("/bump")).json() == {"n": 1}
        with locked_sqlite(path):
            started = time.monotonic()
            assert (await client.get("/read")).json() == {"n": 1}
            assert time.monotonic() - started < SQLITE_BOUND  # it never waited for the lock
    await store.aclose()
