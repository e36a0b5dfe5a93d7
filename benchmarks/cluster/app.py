"""The app every host serves: the benchmark subjects' routes on a store the hosts share.

`create_wsgi_app()` (Flask behind sessionguard's WSGI middleware, for gunicorn) and
`create_app()` (Starlette behind the ASGI middleware, for uvicorn) answer the routes of
`benchmarks.subjects` (`GET /health`, `POST /set/{key}`, `GET /keys`) with the same
secret, so a cookie one host sets is good on every other. The store comes from the
environment: `SG_CLUSTER_STORE` is `redis-cluster` (`RedisStore(url, cluster=True)`) or
`postgres` (`SQLStore(url)`), at `SG_CLUSTER_URL`. (The single-host subjects' `store()`
opens a plain `RedisStore`, which cannot talk to a cluster.)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from ..subjects._sessionguard import SECRET_KEY, configure_logging

if TYPE_CHECKING:
    from flask import Response
    from starlette.applications import Starlette

    from sessionguard import Session
    from sessionguard.stores.redis import RedisStore
    from sessionguard.stores.sql import SQLStore
    from sessionguard.wsgi import SessionMiddleware

__all__ = ["STORE_ENV", "URL_ENV", "StoreKind", "create_app", "create_wsgi_app", "store"]

StoreKind = Literal["redis-cluster", "postgres"]
STORE_ENV = "SG_CLUSTER_STORE"
URL_ENV = "SG_CLUSTER_URL"


def store() -> RedisStore | SQLStore:
    kind, url = os.environ[STORE_ENV], os.environ[URL_ENV]
    if kind == "redis-cluster":
        from sessionguard.stores.redis import RedisStore

        return RedisStore(url, cluster=True)
    if kind == "postgres":
        from sessionguard.stores.sql import SQLStore

        return SQLStore(url)
    raise ValueError(f"{STORE_ENV}={kind!r}: expected 'redis-cluster' or 'postgres'")


def create_wsgi_app() -> SessionMiddleware:
    """For gunicorn: `benchmarks.cluster.app:create_wsgi_app()`."""
    from flask import Flask, jsonify, request

    from sessionguard.wsgi import ENVIRON_KEY, SessionMiddleware

    configure_logging()
    app = Flask(__name__)

    def current() -> Session:
        session: Session = request.environ[ENVIRON_KEY]
        return session

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.post("/set/<key>")
    def set_key(key: str) -> str:
        current()[key] = 1
        return "ok"

    @app.get("/keys")
    def keys() -> Response:
        return jsonify(sorted(current()))

    return SessionMiddleware(app, SECRET_KEY, store=store())


def create_app() -> Starlette:
    """For uvicorn: `--factory benchmarks.cluster.app:create_app`."""
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

    routes = [
        Route("/health", health),
        Route("/set/{key}", set_key, methods=["POST"]),
        Route("/keys", keys),
    ]
    session = Middleware(SessionMiddleware, secret_key=SECRET_KEY, store=store())
    return Starlette(routes=routes, middleware=[session])
