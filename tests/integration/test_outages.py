"""Store outages end to end: a killed Redis and a read-only PostgreSQL answer 503, never 400.

Each test runs a real framework app against a real server, breaks the server the way
production breaks it, and checks the answer, that the stored session survived, and
that the app recovers by itself once the server is back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from flask import Flask, request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionguard.asgi import SessionMiddleware as ASGISessionMiddleware
from sessionguard.stores.redis import RedisStore
from sessionguard.stores.sql import SQLStore
from sessionguard.wsgi import SessionMiddleware as WSGISessionMiddleware, get_session
from tests.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.integration

SECRET = "outage-test-secret"
MISLEADING = ("tamper", "deleted", "invalid")


def starlette_app(store: RedisStore | SQLStore) -> Starlette:
    async def bump(request: Request) -> JSONResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse(dict(request.session))

    async def read(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.session))

    return Starlette(
        routes=[Route("/bump", bump), Route("/read", read)],
        middleware=[Middleware(ASGISessionMiddleware, secret_key=SECRET, store=store)],
    )


def flask_app(store: RedisStore | SQLStore) -> Flask:
    app = Flask(__name__)

    @app.get("/bump")
    def bump() -> dict[str, int]:
        session = get_session(request.environ)
        session["n"] = session.get("n", 0) + 1
        return dict(session)

    @app.get("/read")
    def read() -> dict[str, int]:
        return dict(get_session(request.environ))

    app.wsgi_app = WSGISessionMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, secret_key=SECRET, store=store
    )
    return app


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert "unavailable" in response.text.lower()
    assert not any(word in response.text.lower() for word in MISLEADING)
    assert "set-cookie" not in response.headers  # the client keeps its session cookie


async def test_killed_redis_answers_503_and_recovers_with_data_intact_asgi(
    own_redis: RedisServer,
) -> None:
    store = RedisStore(own_redis.url)
    transport = httpx.ASGITransport(starlette_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as client:
        assert (await client.get("/bump")).json() == {"n": 1}
        assert (await client.get("/bump")).json() == {"n": 2}

        own_redis.kill()
        assert_unavailable(await client.get("/bump"))
        assert_unavailable(await client.get("/read"))

        own_redis.start()
        assert (await client.get("/read")).json() == {"n": 2}
        assert (await client.get("/bump")).json() == {"n": 3}
    await store.aclose()


def test_killed_redis_answers_503_and_recovers_with_data_intact_wsgi(
    own_redis: RedisServer,
) -> None:
    store = RedisStore(own_redis.url)
    transport = httpx.WSGITransport(app=flask_app(store))
    with httpx.Client(transport=transport, base_url="http://t", timeout=30) as client:
        assert client.get("/bump").json() == {"n": 1}

        own_redis.kill()
        assert_unavailable(client.get("/bump"))

        own_redis.start()
        assert client.get("/read").json() == {"n": 1}
        assert client.get("/bump").json() == {"n": 2}
    store.close()


@pytest.fixture
def read_only_switch(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """Yields the server; the test flips it read-only. Always switched back afterwards."""
    yield postgres_server
    postgres_server.set_read_only(False)


@pytest.fixture
async def pg_store(postgres_server: PostgresServer) -> AsyncIterator[SQLStore]:
    store = SQLStore(postgres_server.url, table_name=f"outage_{uuid.uuid4().hex[:12]}")
    yield store
    await store.aclose()


async def test_read_only_postgres_answers_503_never_400_asgi(
    read_only_switch: PostgresServer, pg_store: SQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx.ASGITransport(starlette_app(pg_store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as client:
        assert (await client.get("/bump")).json() == {"n": 1}

        read_only_switch.set_read_only(True)
        with caplog.at_level(logging.ERROR, logger="sessionguard"):
            assert_unavailable(await client.get("/bump"))
        assert "The database is read-only" in caplog.text  # the log names the real cause
        # Reading still works on a read-only database, and shows the data intact.
        assert (await client.get("/read")).json() == {"n": 1}

        read_only_switch.set_read_only(False)
        assert (await client.get("/bump")).json() == {"n": 2}


def test_read_only_postgres_answers_503_never_400_wsgi(
    read_only_switch: PostgresServer, pg_store: SQLStore
) -> None:
    transport = httpx.WSGITransport(app=flask_app(pg_store))
    with httpx.Client(transport=transport, base_url="http://t", timeout=30) as client:
        assert client.get("/bump").json() == {"n": 1}

        read_only_switch.set_read_only(True)
        assert_unavailable(client.get("/bump"))
        assert client.get("/read").json() == {"n": 1}

        read_only_switch.set_read_only(False)
        assert client.get("/bump").json() == {"n": 2}


async def test_first_request_after_a_redis_restart_is_served(own_redis: RedisServer) -> None:
    """Pooled connections die with the server; the one quick retry must reconnect, under
    asyncio as under threads (redis-py's asyncio client ignores a non-asyncio Retry)."""
    store = RedisStore(own_redis.url)
    key = uuid.uuid4().hex + "0" * 8
    await store.asave(key, b"payload", expires_at=4e9, expected_version=None)
    store.save(key, b"payload", expires_at=4e9, expected_version=None)

    own_redis.kill()
    own_redis.start()
    record = await store.aload(key)
    assert record is not None and record.payload == b"payload"
    record = store.load(key)
    assert record is not None and record.payload == b"payload"
    await store.aclose()
