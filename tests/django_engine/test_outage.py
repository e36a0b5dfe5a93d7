"""A store outage under Django: 503 with `Retry-After`, never a 400 or a 500, data intact.

Django's own engines answer a database that refuses writes with a 400 ("The request's
session was deleted before the request completed") or a 500. Here a real redis-server
is killed between requests, through Django's full request handling (its test clients
run the WSGI and the ASGI handler), and started again.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from django.test import AsyncClient, Client, override_settings

from sessionguard.stores.redis import RedisStore
from tests.servers import RedisServer

pytestmark = pytest.mark.integration

MISLEADING = ("tamper", "deleted", "invalid", "interrupted")


def assert_unavailable(status: int, headers: Mapping[str, str], body: bytes) -> None:
    assert status == 503, body
    assert headers["Retry-After"] == "5"  # Django's headers are case-insensitive
    assert b"unavailable" in body.lower()
    assert not any(word.encode() in body.lower() for word in MISLEADING)


def test_wsgi_outage_is_503_and_recovers(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url)
    # Exceptions in views are answered by the middleware; the client must not re-raise
    # what Django logged on its way (a session read in another middleware).
    client = Client(raise_request_exception=False)
    with override_settings(SESSIONGUARD_STORE=store):
        assert client.post("/set/n", {"value": "1"}).status_code == 200
        key = client.cookies["sessionid"].value

        own_redis.kill()
        for response in (client.post("/set/n", {"value": "2"}), client.get("/show")):
            assert_unavailable(response.status_code, response.headers, response.content)
            assert "sessionid" not in response.cookies  # the browser keeps its session

        own_redis.start()
        assert client.get("/show").json()["data"] == {"n": "1"}
        assert client.post("/set/n", {"value": "3"}).status_code == 200
        assert client.get("/show").json()["data"] == {"n": "3"}
        assert client.cookies["sessionid"].value == key
    store.close()


async def test_asgi_outage_is_503_and_recovers(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url)
    client = AsyncClient(raise_request_exception=False)
    with override_settings(SESSIONGUARD_STORE=store):
        assert (await client.post("/set/n", {"value": "1"})).status_code == 200

        own_redis.kill()
        response = await client.post("/set/n", {"value": "2"})
        assert_unavailable(response.status_code, response.headers, response.content)

        own_redis.start()
        assert (await client.get("/show")).json()["data"] == {"n": "1"}
        assert (await client.post("/set/n", {"value": "3"})).status_code == 200
        assert (await client.get("/show")).json()["data"] == {"n": "3"}
    await store.aclose()
