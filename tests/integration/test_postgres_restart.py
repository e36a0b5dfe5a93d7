"""PostgreSQL restarted in the middle of a burst loses no acknowledged write, and the app
serves again without being restarted.

Eight clients each set keys of their own in one session, concurrently, through the real
middleware (WSGI on threads, ASGI on one event loop) and `SQLStore`, while the test
restarts the test's own PostgreSQL with a fast shutdown (every connection dropped) and
starts it again on the same port and data directory. Requests meanwhile may get a 503;
afterwards they succeed again (the pool's pre-ping replaces the dead connections); and
every key whose request got a 200 is in the final session.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from flask import Flask, Response, jsonify, request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionguard.asgi import SessionMiddleware as ASGISessionMiddleware
from sessionguard.stores.sql import SQLStore
from sessionguard.wsgi import SessionMiddleware as WSGISessionMiddleware, get_session
from tests.servers import PostgresServer

from .conftest import cookie_value, session_cookie

pytestmark = pytest.mark.integration

SECRET = "restart-test-secret"
CLIENTS = 8
MAX_REQUESTS = 400  # per client; the burst normally ends long before, when told to
ACKNOWLEDGED_PER_PHASE = 2 * CLIENTS  # 200s to see before the restart, and after it
PHASE_TIMEOUT = 30.0  # seconds for each phase of the burst, and for the clients to stop


def starlette_app(store: SQLStore) -> Starlette:
    async def set_key(request: Request) -> JSONResponse:
        request.session[request.path_params["key"]] = 1
        return JSONResponse({"set": request.path_params["key"]})

    async def keys(request: Request) -> JSONResponse:
        return JSONResponse(sorted(request.session))

    return Starlette(
        routes=[Route("/set/{key}", set_key), Route("/keys", keys)],
        middleware=[Middleware(ASGISessionMiddleware, secret_key=SECRET, store=store)],
    )


def flask_app(store: SQLStore) -> Flask:
    app = Flask(__name__)

    @app.get("/set/<key>")
    def set_key(key: str) -> dict[str, str]:
        get_session(request.environ)[key] = 1
        return {"set": key}

    @app.get("/keys")
    def keys() -> Response:
        return jsonify(sorted(get_session(request.environ)))

    app.wsgi_app = WSGISessionMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, secret_key=SECRET, store=store
    )
    return app


@dataclass
class Burst:
    """What the clients saw, request by request, and when the restart was over."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    restarted_at: float = float("inf")
    results: list[tuple[str, int, float]] = field(default_factory=list)  # key, status, start

    def record(self, key: str, status: int, started: float) -> None:
        with self.lock:
            self.results.append((key, status, started))

    def acknowledged(self, after: float = 0.0) -> list[str]:
        with self.lock:
            return [
                key for key, status, started in self.results if status == 200 and started > after
            ]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + PHASE_TIMEOUT
        while not condition():
            assert time.monotonic() < deadline, f"{what} within {PHASE_TIMEOUT}s: {self.summary()}"
            time.sleep(0.01)

    def run(self, restart: Callable[[], None]) -> None:
        """Restart once the burst is under way; stop it once requests succeed again."""
        self.wait_for(lambda: len(self.acknowledged()) >= ACKNOWLEDGED_PER_PHASE, "200s")
        restart()
        self.restarted_at = time.monotonic()
        self.wait_for(
            lambda: len(self.acknowledged(after=self.restarted_at)) >= ACKNOWLEDGED_PER_PHASE,
            "200s after the restart",
        )
        self.stop.set()

    def summary(self) -> dict[int, int]:
        with self.lock:
            statuses = [status for _, status, _ in self.results]
        return {status: statuses.count(status) for status in sorted(set(statuses))}

    def check(self, final_keys: list[str]) -> None:
        statuses = self.summary()
        assert set(statuses) <= {200, 503}, statuses  # a 503 while it is down, never worse
        with self.lock:
            late = [
                (key, status)
                for key, status, started in self.results
                if started > self.restarted_at
            ]
        # The pool noticed the dropped connections by itself: once the server was back,
        # every request got a 200.
        assert all(status == 200 for _, status in late), late
        lost = set(self.acknowledged()) - set(final_keys)
        assert not lost, f"{len(lost)} acknowledged writes lost: {sorted(lost)[:10]}"


@pytest.fixture
def own_postgres(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, so restarting it harms no other test."""
    with PostgresServer.temporary(postgres_server.bindir) as server:
        yield server


def test_restart_mid_burst_loses_no_acknowledged_write_wsgi(
    own_postgres: PostgresServer,
) -> None:
    store = SQLStore(own_postgres.url)
    transport = httpx.WSGITransport(app=flask_app(store))
    burst = Burst()

    def client(number: int, cookie: dict[str, str]) -> None:
        with httpx.Client(transport=transport, base_url="http://t", timeout=30) as http:
            for n in range(MAX_REQUESTS):
                if burst.stop.is_set():
                    return
                key, started = f"c{number}-{n}", time.monotonic()
                status = http.get(f"/set/{key}", headers=cookie).status_code
                burst.record(key, status, started)
                if status != 200:
                    time.sleep(0.02)  # the database is down: don't spin

    with httpx.Client(transport=transport, base_url="http://t", timeout=30) as http:
        cookie = session_cookie(cookie_value(http.get("/set/first")))
        burst.record("first", 200, time.monotonic())
        threads = [
            threading.Thread(target=client, args=(number, cookie), daemon=True)
            for number in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        try:
            burst.run(own_postgres.restart)
        finally:
            burst.stop.set()
            for thread in threads:
                thread.join(timeout=PHASE_TIMEOUT)
        assert not any(thread.is_alive() for thread in threads)

        response = http.get("/keys", headers=cookie)
        assert response.status_code == 200, response.text
        burst.check(response.json())
    store.close()


async def test_restart_mid_burst_loses_no_acknowledged_write_asgi(
    own_postgres: PostgresServer,
) -> None:
    store = SQLStore(own_postgres.url)
    transport = httpx.ASGITransport(starlette_app(store))
    burst = Burst()

    async def client(http: httpx.AsyncClient, number: int, cookie: dict[str, str]) -> None:
        for n in range(MAX_REQUESTS):
            if burst.stop.is_set():
                return
            key, started = f"c{number}-{n}", time.monotonic()
            status = (await http.get(f"/set/{key}", headers=cookie)).status_code
            burst.record(key, status, started)
            await asyncio.sleep(0 if status == 200 else 0.02)

    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
        cookie = session_cookie(cookie_value(await http.get("/set/first")))
        burst.record("first", 200, time.monotonic())
        clients = [asyncio.create_task(client(http, n, cookie)) for n in range(CLIENTS)]
        try:
            # In a thread: the clients go on, on this event loop, while it waits and restarts.
            await asyncio.to_thread(burst.run, own_postgres.restart)
        finally:
            burst.stop.set()
            async with asyncio.timeout(PHASE_TIMEOUT):
                await asyncio.gather(*clients)

        response = await http.get("/keys", headers=cookie)
        assert response.status_code == 200, response.text
        burst.check(response.json())
    await store.aclose()
