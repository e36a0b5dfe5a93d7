"""sessionguard's ASGI middleware in a Starlette app, on uvicorn workers, FileStore."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..harness import Subject
from ._sessionguard import SECRET_KEY, configure_logging, env, file_store, session_id, setting

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> Starlette:
    """The app uvicorn serves: `SG_DURABLE` and `SG_MERGE` choose the configuration."""
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
        SessionMiddleware, secret_key=SECRET_KEY, store=file_store(), merge=setting("SG_MERGE")
    )
    routes = [
        Route("/health", health),
        Route("/set/{key}", set_key, methods=["POST"]),
        Route("/keys", keys),
    ]
    return Starlette(routes=routes, middleware=[session])


def _subject(*, durable: bool, merge: bool) -> Subject:
    store = "durable" if durable else "file"
    return Subject(
        name=f"sg-asgi-{store}-{'merge' if merge else 'lww'}",
        description=(
            f"sessionguard ASGI + Starlette, FileStore(durable={durable}), merge={merge}, "
            "uvicorn workers"
        ),
        server="uvicorn",
        app=f"{__name__}:create_app",
        env=env(durable=durable, merge=merge),
        settings={"store": "FileStore", "durable": durable, "merge": merge},
        session_id=session_id,
        baseline=None if not merge else f"sg-asgi-{store}-lww",
        requires=("starlette", "uvicorn"),
    )


SUBJECTS = [
    _subject(durable=False, merge=True),
    _subject(durable=False, merge=False),
    _subject(durable=True, merge=True),
    _subject(durable=True, merge=False),
]
