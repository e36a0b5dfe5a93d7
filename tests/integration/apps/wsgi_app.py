"""The WSGI torture app: `routes` behind `sessionguard.wsgi.SessionMiddleware` and a FileStore.

Served by gunicorn as `apps.wsgi_app:create_app()`, configured by the environment (see
`routes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessionguard.session import Session
from sessionguard.stores.file import FileStore
from sessionguard.wsgi import ENVIRON_KEY, SessionMiddleware

from . import routes

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 504: "Gateway Timeout"}


def build_app(store: FileStore, secret: str) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ[ENVIRON_KEY]
        params = routes.parse_query(environ.get("QUERY_STRING", ""))
        if "hold" in params and not routes.hold(params["hold"]):
            status, body = 504, b'{"error": "hold was not released"}'
        else:
            status, body = routes.handle(session, environ["PATH_INFO"], params)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(f"{status} {_REASONS[status]}", headers)
        return [body]

    return SessionMiddleware(app, secret, store=store)


def create_app() -> WSGIApplication:
    """Factory for the server: configuration from the environment, library logs to stderr."""
    routes.log_to_stderr()
    return build_app(routes.store_from_env(), routes.secret_from_env())
