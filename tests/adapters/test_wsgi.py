"""The WSGI middleware under a raw WSGI app and Flask, end to end through httpx."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import EnvironBuilder

from sessionguard.wsgi import SessionMiddleware

from .apps import (
    BASE_URL,
    SECRET,
    WSGI_FRAMEWORKS,
    CountingFileStore,
    Framework,
    cookie_header,
    raw_wsgi_app,
    session_set_cookie,
)
from .conftest import ClientFactory


@pytest.fixture(params=WSGI_FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> Framework:
    value: Framework = request.param
    return value


async def test_request_that_does_not_touch_session_gets_no_set_cookie(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    response = await client.get("/noop")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    response = await client.get("/noop", cookie=cookie_header(cookie.value))
    assert "set-cookie" not in response.headers


# -- raw WSGI only: iterables, lazy start_response, close() ------------------------------


async def test_generator_app_calling_start_response_lazily_gets_set_cookie(
    make_client: ClientFactory,
) -> None:
    client = make_client(framework="raw_wsgi")
    response = await client.get("/lazy")
    assert response.status_code == 200
    assert response.text == "lazy body"
    cookie = session_set_cookie(response)
    assert cookie is not None
    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {"lazy": True}


async def test_app_iterable_close_is_called_after_the_response(
    make_client: ClientFactory,
) -> None:
    client = make_client(framework="raw_wsgi")
    response = await client.get("/closing")
    assert response.text == "closing body"
    assert session_set_cookie(response) is not None
    assert client.calls == ["/closing", "closed"]


def _environ(path: str) -> Any:
    return EnvironBuilder(path=path, base_url=BASE_URL).get_environ()


def test_app_iterable_close_is_called_when_server_closes_without_iterating(
    store: CountingFileStore,
) -> None:
    # PEP 3333: a server that gives up early (client went away) only calls close().
    calls: list[str] = []
    middleware = SessionMiddleware(raw_wsgi_app(calls), secret_key=SECRET, store=store)
    result = middleware(_environ("/closing"), lambda status, headers, exc_info=None: len)
    close = getattr(result, "close", None)
    assert close is not None
    close()
    assert calls == ["/closing", "closed"]


def test_app_iterable_close_is_called_when_server_stops_after_first_chunk(
    store: CountingFileStore,
) -> None:
    calls: list[str] = []
    middleware = SessionMiddleware(raw_wsgi_app(calls), secret_key=SECRET, store=store)
    result = middleware(_environ("/closing"), lambda status, headers, exc_info=None: len)
    assert next(iter(result)) == b"closing "
    getattr(result, "close")()  # noqa: B009 - the WSGI iterable's optional close()
    assert calls == ["/closing", "closed"]
