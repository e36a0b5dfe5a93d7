"""Beaker's `SessionMiddleware` with its file backend, around a raw WSGI app, on gunicorn.

Beaker locks each session's namespace with lock files while it reads or writes it, and
writes the whole session (pickled) back on `save()`. The cookie is signed (`secret`),
so the id is the value after the 40-character HMAC.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..harness import Subject
from ._peer import SECRET_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["SUBJECTS", "create_app"]

COOKIE_NAME = "beaker.session.id"
#: Beaker's own bookkeeping keys, which are not the app's data.
_INTERNAL = frozenset({"_accessed_time", "_creation_time"})


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
    if path == "/health":
        return _answer(start_response, b"ok", "text/plain")
    session: Any = environ["beaker.session"]
    if path.startswith("/set/") and method == "POST":
        session[path.removeprefix("/set/")] = 1
        session.save()
        return _answer(start_response, b"ok", "text/plain")
    if path == "/keys":
        keys = sorted(key for key in session if key not in _INTERNAL)
        return _answer(start_response, json.dumps(keys).encode(), "application/json")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def _answer(start_response: StartResponse, body: bytes, content_type: str) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]


def create_app() -> WSGIApplication:
    from beaker.middleware import SessionMiddleware  # type: ignore[import-untyped]

    directory = os.environ["BENCH_STORE_DIR"]
    options = {
        "session.type": "file",
        "session.data_dir": os.path.join(directory, "data"),
        "session.lock_dir": os.path.join(directory, "lock"),
        "session.key": COOKIE_NAME,
        "session.secret": SECRET_KEY,
    }
    wrapped: WSGIApplication = SessionMiddleware(app, options)
    return wrapped


def session_id(cookie_value: str) -> str:
    return cookie_value[40:]  # SignedCookie: hex HMAC-SHA1, then the id


SUBJECTS = [
    Subject(
        name="beaker-file",
        description="Beaker 1.x SessionMiddleware, type=file (lock files), raw WSGI app, "
        "gunicorn sync workers",
        server="gunicorn-sync",
        app=f"{__name__}:create_app",
        settings={"store": "Beaker file"},
        cookie_name=COOKIE_NAME,
        session_id=session_id,
        requires=("beaker", "gunicorn"),
        storage="file",
    )
]
