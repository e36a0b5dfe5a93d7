"""sessionguard's WSGI middleware around a Flask app, on gunicorn sync workers, FileStore."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..harness import Subject
from ._sessionguard import SECRET_KEY, configure_logging, env, file_store, session_id, setting

if TYPE_CHECKING:
    from flask import Response

    from sessionguard import Session
    from sessionguard.wsgi import SessionMiddleware

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> SessionMiddleware:
    """The app gunicorn serves: `SG_DURABLE` and `SG_MERGE` choose the configuration."""
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

    return SessionMiddleware(app, SECRET_KEY, store=file_store(), merge=setting("SG_MERGE"))


def _subject(*, durable: bool, merge: bool) -> Subject:
    store = "durable" if durable else "file"
    return Subject(
        name=f"sg-wsgi-{store}-{'merge' if merge else 'lww'}",
        description=(
            f"sessionguard WSGI + Flask, FileStore(durable={durable}), merge={merge}, "
            "gunicorn sync workers"
        ),
        server="gunicorn-sync",
        app=f"{__name__}:create_app",
        env=env(durable=durable, merge=merge),
        settings={"store": "FileStore", "durable": durable, "merge": merge},
        session_id=session_id,
        baseline=None if not merge else f"sg-wsgi-{store}-lww",
        requires=("flask", "gunicorn"),
    )


SUBJECTS = [
    _subject(durable=False, merge=True),
    _subject(durable=False, merge=False),
    _subject(durable=True, merge=True),
    _subject(durable=True, merge=False),
]
