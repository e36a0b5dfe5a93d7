"""What Starlette's own session tests rely on, through Starlette's `TestClient`, on asyncio
and on trio, over `FileStore` and `MemoryStore` (issue 11, item 1).

The behaviours were read from Starlette 1.x's `tests/middleware/test_session.py`; these
tests are our own. Only the import changes for a Starlette user, so a view returns
`JSONResponse({"session": request.session})` and reads Set-Cookie as Starlette writes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from sessionguard import FileStore, MemoryStore
from sessionguard.asgi import SessionMiddleware
from sessionguard.stores import Store

ClientFor = Callable[..., TestClient]
Backend = Literal["asyncio", "trio"]


async def show(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def add(request: Request) -> JSONResponse:
    request.session.update(await request.json())
    return JSONResponse({"session": request.session})


async def empty(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": request.session})


async def untouched(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


ROUTES = [
    Route("/show", show),
    Route("/add", add, methods=["POST"]),
    Route("/empty", empty, methods=["POST"]),
    Route("/untouched", untouched),
]


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> Backend:
    value: Backend = request.param
    return value


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = FileStore(tmp_path / "sessions") if request.param == "file" else MemoryStore()
    yield made
    made.close()


@pytest.fixture
def client_for(backend: Backend, store: Store) -> Iterator[ClientFor]:
    clients: list[TestClient] = []

    def make(base_url: str = "http://testserver", **options: Any) -> TestClient:
        middleware = Middleware(SessionMiddleware, secret_key="example", store=store, **options)
        client = TestClient(
            Starlette(routes=ROUTES, middleware=[middleware]), base_url=base_url, backend=backend
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_the_session_is_a_json_serialisable_dict_kept_between_requests(
    client_for: ClientFor,
) -> None:
    client = client_for()
    assert client.get("/show").json() == {"session": {}}

    added = client.post("/add", json={"user": "alice"})
    assert added.json() == {"session": {"user": "alice"}}
    max_age = re.search(r"; Max-Age=(\d+);", added.headers["set-cookie"])
    assert max_age is not None and int(max_age[1]) == 14 * 24 * 3600

    assert client.get("/show").json() == {"session": {"user": "alice"}}
    assert client.post("/empty").json() == {"session": {}}
    assert client.get("/show").json() == {"session": {}}


def test_a_negative_max_age_ends_the_session_with_the_request(client_for: ClientFor) -> None:
    client = client_for(max_age=-1)
    added = client.post("/add", json={"user": "alice"})
    assert added.json() == {"session": {"user": "alice"}}
    value = re.search(r"session=([^;]*);", added.headers["set-cookie"])
    assert value is not None

    again = client_for(max_age=-1)
    again.cookies.set("session", value[1])
    assert again.get("/show").json() == {"session": {}}


def test_https_only_cookies_are_not_sent_back_over_http(client_for: ClientFor) -> None:
    plain = client_for(https_only=True)
    plain.post("/add", json={"user": "alice"})
    assert plain.get("/show").json() == {"session": {}}

    secure = client_for("https://testserver", https_only=True)
    secure.post("/add", json={"user": "alice"})
    assert secure.get("/show").json() == {"session": {"user": "alice"}}


def test_the_cookie_path_and_domain_are_written_as_starlette_writes_them(
    backend: Backend, store: Store
) -> None:
    inner = Starlette(
        routes=ROUTES,
        middleware=[Middleware(SessionMiddleware, secret_key="k", store=store, path="/inner")],
    )
    app = Starlette(routes=[Mount("/inner", app=inner)])
    with TestClient(app, base_url="http://testserver/inner", backend=backend) as client:
        cookie = client.post("/add", json={"a": 1}).headers["set-cookie"]
    assert re.search(r"; path=/inner;", cookie)


def test_a_bogus_cookie_gives_an_empty_session_not_an_error(client_for: ClientFor) -> None:
    client = client_for()
    client.cookies.set("session", "invalid")
    assert client.get("/show").json() == {"session": {}}


def test_max_age_none_makes_a_browser_session_cookie_and_domain_is_sent(
    client_for: ClientFor,
) -> None:
    cookie = client_for(max_age=None).post("/add", json={"a": 1}).headers["set-cookie"]
    assert "Max-Age" not in cookie
    cookie = client_for(domain=".example.com").post("/add", json={"a": 1}).headers["set-cookie"]
    assert "domain=.example.com" in cookie


def test_set_cookie_only_when_changed_and_vary_only_when_accessed(client_for: ClientFor) -> None:
    client = client_for()
    added = client.post("/add", json={"a": 1})
    assert "set-cookie" in added.headers
    assert "cookie" in added.headers.get("vary", "").lower()

    shown = client.get("/show")
    assert "set-cookie" not in shown.headers
    assert "cookie" in shown.headers.get("vary", "").lower()

    assert "cookie" not in client.get("/untouched").headers.get("vary", "").lower()
