"""Starlette's own `SessionMiddleware`: the whole session in a signed cookie, on uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..harness import Subject
from ._peer import SECRET_KEY

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> Starlette:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def set_key(request: Request) -> PlainTextResponse:
        request.session[request.path_params["key"]] = 1
        return PlainTextResponse("ok")

    async def keys(request: Request) -> JSONResponse:
        return JSONResponse(sorted(request.session))

    routes = [
        Route("/health", health),
        Route("/set/{key}", set_key, methods=["POST"]),
        Route("/keys", keys),
    ]
    # Starlette's defaults: cookie "session", 14 days, SameSite=lax, itsdangerous signature.
    return Starlette(
        routes=routes, middleware=[Middleware(SessionMiddleware, secret_key=SECRET_KEY)]
    )


SUBJECTS = [
    Subject(
        name="starlette-cookie",
        description=(
            "Starlette's SessionMiddleware (the session signed into the cookie, no server "
            "store), uvicorn workers"
        ),
        server="uvicorn",
        app=f"{__name__}:create_app",
        settings={"store": "signed cookie"},
        session_id=None,  # the cookie is the data: there is no id to re-issue
        requires=("starlette", "itsdangerous", "uvicorn"),
        storage="cookie",
    )
]
