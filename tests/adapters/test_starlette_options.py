"""The ASGI middleware takes Starlette's `SessionMiddleware` options with their meaning
(issue 11, item 1, the options part): every keyword of Starlette's own middleware,
`secret_key=Secret(...)` from Starlette's config, and nothing misspelt."""

from __future__ import annotations

import inspect
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionguard import ConfigurationError, FileStore, asgi, wsgi
from sessionguard.options import SessionOptions, build_core


def test_every_option_of_starlettes_middleware_is_one_of_ours() -> None:
    """Fails when a new Starlette release adds an option we do not take yet."""
    theirs = set(inspect.signature(StarletteSessionMiddleware.__init__).parameters)
    ours = set(inspect.signature(asgi.SessionMiddleware.__init__).parameters)
    ours |= set(SessionOptions.__annotations__)
    assert theirs - {"self", "app"} <= ours


@pytest.mark.parametrize("middleware", ["asgi", "wsgi"])
def test_a_misspelt_option_is_an_error_naming_the_right_one(
    middleware: str, tmp_path: Path
) -> None:
    store = FileStore(tmp_path)
    options = {"htps_only": True}
    with pytest.raises(ConfigurationError, match=r"'htps_only' \(did you mean 'https_only'\?\)"):
        if middleware == "asgi":
            asgi.SessionMiddleware(Starlette(), "secret", store=store, **options)  # type: ignore[arg-type]
        else:
            wsgi.SessionMiddleware(lambda e, s: [], "secret", store=store, **options)  # type: ignore[arg-type]


async def count(request: Request) -> Response:
    request.session["n"] = request.session.get("n", 0) + 1
    return JSONResponse({"n": request.session["n"]})


async def test_a_secret_from_starlette_config_and_partitioned_work(tmp_path: Path) -> None:
    app = Starlette(
        routes=[Route("/", count)],
        middleware=[
            Middleware(
                asgi.SessionMiddleware,
                secret_key=Secret("from-the-environment"),
                store=FileStore(tmp_path),
                https_only=True,
                partitioned=True,
            )
        ],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        first = await client.get("/")
        second = await client.get("/")

    assert (first.json(), second.json()) == ({"n": 1}, {"n": 2})
    attributes = [part.strip() for part in first.headers["set-cookie"].split(";")]
    assert "partitioned" in attributes and "secure" in attributes


def test_a_long_max_age_is_not_cut_short_by_the_default_absolute_lifetime() -> None:
    ninety_days = 90 * 24 * 3600
    assert build_core("k", max_age=ninety_days).absolute_timeout == ninety_days
    assert build_core("k").absolute_timeout == 30 * 24 * 3600
    assert build_core("k", max_age=ninety_days, absolute_timeout=60).absolute_timeout == 60


def test_the_server_side_idle_timeout_follows_max_age_as_documented() -> None:
    assert build_core("k", max_age=3600).idle_timeout == 3600
    assert build_core("k", max_age=None).idle_timeout == 14 * 24 * 3600
    assert build_core("k", max_age=-1).idle_timeout == 0  # ends with the request
    assert build_core("k", max_age=3600, idle_timeout=60).idle_timeout == 60
