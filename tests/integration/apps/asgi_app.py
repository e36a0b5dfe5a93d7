"""The ASGI torture app: `routes` behind `sessionguard.asgi.SessionMiddleware` and a FileStore.

The async FileStore runs its blocking calls in its own thread pool. Served by uvicorn as
`apps.asgi_app:create_app` with `--factory`, configured by the environment (see
`routes`); the in-process tests call `build_app` directly.
"""

from __future__ import annotations

from sessionguard.asgi import SessionMiddleware
from sessionguard.session import Session
from sessionguard.stores.file import FileStore
from sessionguard.types import ASGIApp, Receive, Scope, Send

from . import routes


def build_app(store: FileStore, secret: str) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(store, receive, send)
            return
        session: Session = scope["session"]
        params = routes.parse_query(scope["query_string"].decode("latin-1"))
        if "hold" in params and not await routes.ahold(params["hold"]):
            status, body = 504, b'{"error": "hold was not released"}'
        else:
            status, body = routes.handle(session, scope["path"], params)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return SessionMiddleware(app, secret, store=store)


async def _lifespan(store: FileStore, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await store.aclose()  # joins the store's thread pool
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app() -> ASGIApp:
    """Factory for the server: configuration from the environment, library logs to stderr."""
    routes.log_to_stderr()
    return build_app(routes.store_from_env(), routes.secret_from_env())
