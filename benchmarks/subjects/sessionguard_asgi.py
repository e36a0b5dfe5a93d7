"""sessionguard's ASGI middleware in a Starlette app, on uvicorn workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sessionguard import SECRET_KEY, configure_logging, setting, store, subject

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> Starlette:
    """The app uvicorn serves: `SG_STORE` and `SG_MERGE` choose the configuration."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from sessionguard.asgi import SessionMiddleware

    configure_logging()

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def set_key(request: Request) -> PlainTextResponse:
        request.session[request.path_params["key"]] = 1
        return PlainTextResponse("ok")

    async def keys(request: Request) -> JSONResponse:
        return JSONResponse(sorted(request.session))

    session = Middleware(
        SessionMiddleware, secret_key=SECRET_KEY, store=store(), merge=setting("SG_MERGE")
    )
    routes = [
        Route("/health", health),
        Route("/set/{key}", set_key, methods=["POST"]),
        Route("/keys", keys),
    ]
    return Starlette(routes=routes, middleware=[session])


SUBJECTS = [
    subject(adapter="asgi", module=__name__, store="file"),
    subject(adapter="asgi", module=__name__, store="file", merge=False),
    subject(adapter="asgi", module=__name__, store="durable"),
    subject(adapter="asgi", module=__name__, store="durable", merge=False),
    subject(adapter="asgi", module=__name__, store="sqlite"),
    subject(adapter="asgi", module=__name__, store="redis"),
]
