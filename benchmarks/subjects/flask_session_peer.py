"""Flask-Session 0.8: Flask's server-side sessions, on gunicorn sync workers.

`flask-session-fs` keeps them in cachelib's `FileSystemCache` (what Flask-Session 0.8
recommends instead of its deprecated "filesystem" type), `flask-session-redis` in Redis.
Everything else is Flask-Session's defaults: unsigned random id in the cookie, msgpack,
the session rewritten on every request (SESSION_REFRESH_EACH_REQUEST, Flask's default).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..harness import SERVICE_URL_ENV, Subject
from ._peer import SECRET_KEY, plain_id

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> Flask:
    """The app gunicorn serves; `FLASK_SESSION_TYPE` is "cachelib" or "redis"."""
    from flask import Flask, Response, jsonify, session
    from flask_session import Session  # type: ignore[import-untyped]

    app = Flask(__name__)
    app.secret_key = SECRET_KEY
    kind = os.environ["FLASK_SESSION_TYPE"]
    app.config["SESSION_TYPE"] = kind
    if kind == "cachelib":
        from cachelib import FileSystemCache

        # cachelib's defaults (threshold 500 entries, file mode 0600).
        app.config["SESSION_CACHELIB"] = FileSystemCache(os.environ["BENCH_STORE_DIR"])
    else:
        import redis

        app.config["SESSION_REDIS"] = redis.Redis.from_url(os.environ[SERVICE_URL_ENV["redis"]])
    Session(app)

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.post("/set/<key>")
    def set_key(key: str) -> str:
        session[key] = 1
        return "ok"

    @app.get("/keys")
    def keys() -> Response:
        return jsonify(sorted(session))

    return app


def _subject(kind: str) -> Subject:
    fs = kind == "cachelib"
    return Subject(
        name="flask-session-fs" if fs else "flask-session-redis",
        description=(
            "Flask-Session 0.8 + "
            + ("cachelib FileSystemCache" if fs else "Redis")
            + ", gunicorn sync workers"
        ),
        server="gunicorn-sync",
        app=f"{__name__}:create_app",
        env={"FLASK_SESSION_TYPE": kind},
        settings={"store": "cachelib FileSystemCache" if fs else "Redis"},
        session_id=plain_id,
        requires=("flask", "flask_session", "gunicorn", "cachelib" if fs else "redis"),
        storage="file" if fs else "redis",
        services=() if fs else ("redis",),
        default=fs,
    )


SUBJECTS = [_subject("cachelib"), _subject("redis")]
