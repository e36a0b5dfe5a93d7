"""The ASGI middleware under Starlette and FastAPI, end to end through httpx."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from sessionguard.asgi import SessionMiddleware
from sessionguard.types import Message

from .apps import (
    ASGI_FRAMEWORKS,
    CountingFileStore,
    FlakyMemoryStore,
    Framework,
    cookie_header,
    session_set_cookie,
)
from .conftest import ClientFactory


@pytest.fixture(params=ASGI_FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> Framework:
    value: Framework = request.param
    return value


async def test_request_that_does_not_touch_session_gets_no_set_cookie(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    client = make_client()
    response = await client.get("/noop")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    response = await client.get("/noop", cookie=cookie_header(cookie.value))
    assert "set-cookie" not in response.headers


async def test_streaming_response_still_gets_set_cookie(make_client: ClientFactory) -> None:
    client = make_client()
    response = await client.get("/stream")
    assert response.text == "streamed in three parts"
    cookie = session_set_cookie(response)
    assert cookie is not None
    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {"streamed": True}


class Recorder:
    """`receive` that replays scripted messages, and `send` that records what was sent."""

    def __init__(self, *incoming: Message) -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        assert self.incoming, "the app asked for more messages than the test scripted"
        return self.incoming.pop(0)

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def _middleware(make_client: ClientFactory) -> tuple[SessionMiddleware, list[str]]:
    client = make_client()
    # Starlette and FastAPI build their middleware stack lazily, on the first call.
    stack = client.app.build_middleware_stack()
    while not isinstance(stack, SessionMiddleware):
        stack = stack.app
    return stack, client.calls


async def test_lifespan_scope_passes_through_to_the_app(make_client: ClientFactory) -> None:
    client = make_client()
    recorder = Recorder({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    # The whole app, so the middleware sits where it does in production.
    await client.app(scope, recorder.receive, recorder.send)
    assert [message["type"] for message in recorder.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert client.calls == ["lifespan.startup", "lifespan.shutdown"]
    assert "session" not in scope


async def test_lifespan_reaches_the_app_when_middleware_is_called_directly(
    make_client: ClientFactory,
) -> None:
    middleware, calls = _middleware(make_client)
    recorder = Recorder({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    # Starlette's Router answers lifespan; below the middleware, the router is the app.
    await middleware(scope, recorder.receive, recorder.send)
    assert [message["type"] for message in recorder.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert calls == ["lifespan.startup", "lifespan.shutdown"]


def _websocket_scope(cookie: str) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
        "state": {},
    }


async def test_a_websocket_changes_a_stored_session_server_side(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    """A cookie session cannot do this: the change reaches the next HTTP request."""
    client = make_client()
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    await client.get("/count", cookie=cookie_header(cookie.value))
    recorder = Recorder({"type": "websocket.connect"}, {"type": "websocket.disconnect"})
    await client.app(_websocket_scope(cookie_header(cookie.value)), recorder.receive, recorder.send)
    types = [message["type"] for message in recorder.sent]
    assert types == ["websocket.accept", "websocket.send", "websocket.send", "websocket.close"]
    assert recorder.sent[1]["text"] == '{"count":2}'
    assert recorder.sent[2]["text"] == "mutated"

    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {"count": 999}


async def test_a_new_session_on_a_websocket_works_in_memory_and_is_dropped(
    make_client: ClientFactory, store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    recorder = Recorder({"type": "websocket.connect"}, {"type": "websocket.disconnect"})
    with caplog.at_level(logging.DEBUG, logger="sessionguard"):
        await client.app(_websocket_scope("other=1"), recorder.receive, recorder.send)
    assert recorder.sent[1]["text"] == "{}"
    assert recorder.sent[2]["text"] == "mutated"
    assert [p for p in store_dir.rglob("*") if p.is_file() and ".locks" not in p.parts] == []
    assert any("websocket was not saved" in r.getMessage() for r in caplog.records)


async def test_websocket_is_refused_with_try_again_later_when_store_is_down(
    make_client: ClientFactory,
) -> None:
    flaky = FlakyMemoryStore()
    client = make_client(store=flaky)
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    flaky.failing = True
    calls = len(client.calls)
    recorder = Recorder({"type": "websocket.connect"}, {"type": "websocket.disconnect"})
    await client.app(_websocket_scope(cookie_header(cookie.value)), recorder.receive, recorder.send)
    assert recorder.sent == [{"type": "websocket.close", "code": 1013}]
    assert len(client.calls) == calls
