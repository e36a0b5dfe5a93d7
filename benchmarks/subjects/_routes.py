"""The routes every subject's app answers (see the package docstring), once per framework.

Called from the app factories only, so the frameworks are imported here at call time
too: a runner without them can still import the subject modules.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask
    from starlette.routing import Route

__all__ = ["flask_app", "starlette_routes"]


def flask_app(import_name: str, session: Callable[[], MutableMapping[str, Any]]) -> Flask:
    """A Flask app with the routes; `session()` is the current request's session."""
    from flask import Flask, Response, jsonify

    app = Flask(import_name)

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.post("/set/<key>")
    def set_key(key: str) -> str:
        session()[key] = 1
        return "ok"

    @app.get("/keys")
    def keys() -> Response:
        return jsonify(sorted(session()))

    return app


def starlette_routes() -> list[Route]:
    """The routes for a Starlette app whose middleware puts the session in `request.session`."""
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

    return [
        Route("/health", health),
        Route("/set/{key}", set_key, methods=["POST"]),
        Route("/keys", keys),
    ]
