"""sessionguard's WSGI middleware around a Flask app, on gunicorn sync workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sessionguard import SECRET_KEY, configure_logging, setting, store, subject

if TYPE_CHECKING:
    from flask import Response

    from sessionguard import Session
    from sessionguard.wsgi import SessionMiddleware

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> SessionMiddleware:
    """The app gunicorn serves: `SG_STORE` and `SG_MERGE` choose the configuration."""
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

    return SessionMiddleware(app, SECRET_KEY, store=store(), merge=setting("SG_MERGE"))


SUBJECTS = [
    subject(adapter="wsgi", module=__name__, store="file"),
    subject(adapter="wsgi", module=__name__, store="file", merge=False),
    subject(adapter="wsgi", module=__name__, store="durable"),
    subject(adapter="wsgi", module=__name__, store="durable", merge=False),
    subject(adapter="wsgi", module=__name__, store="postgres"),
]
