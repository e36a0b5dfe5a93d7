"""starsessions 2 with its Redis store, in a Starlette app on uvicorn (under `--all`).

The cookie holds a random session id (not signed); the store keeps JSON. Handlers load
the session explicitly with `load_session`, as starsessions asks.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..harness import SERVICE_URL_ENV, Subject
from ._peer import plain_id

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> Starlette:
    from redis.asyncio import Redis
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route
    from starsessions import SessionMiddleware, load_session
    from starsessions.stores.redis import RedisStore

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def set_key(request: Request) -> PlainTextResponse:
        await load_session(request)
        request.session[request.path_params["key"]] = 1
        return PlainTextResponse("ok")

    async def keys(request: Request) -> JSONResponse:
        await load_session(request)
        return JSONResponse(sorted(request.session))

    store = RedisStore(connection=Redis.from_url(os.environ[SERVICE_URL_ENV["redis"]]))
    routes = [
        Route("/health", health),
        Route("/set/{key}", set_key, methods=["POST"]),
        Route("/keys", keys),
    ]
    # cookie_https_only=False: the benchmark speaks plain HTTP on 127.0.0.1.
    middleware = [Middleware(SessionMiddleware, store=store, cookie_https_only=False)]
    return Starlette(routes=routes, middleware=middleware)


SUBJECTS = [
    Subject(
        name="starsessions-redis",
        description="starsessions 2 + its RedisStore, Starlette, uvicorn workers",
        server="uvicorn",
        app=f"{__name__}:create_app",
        settings={"store": "starsessions RedisStore"},
        session_id=plain_id,
        requires=("starsessions", "redis", "uvicorn"),
        storage="redis",
        services=("redis",),
        default=False,
    )
]
