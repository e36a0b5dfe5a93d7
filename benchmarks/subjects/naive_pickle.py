"""The baseline that shows the original bug: a pickle file per session, written in place.

A raw WSGI app with the classic store: `pickle.load` to read, `open(path, "wb")` plus
`pickle.dump` to write, and a new session whenever the load fails for any reason. The
truncating `open` leaves the file empty, then half-written, while another request
reads it: that reader gets an `EOFError` or `UnpicklingError`, and the user a new,
empty session (a re-issued id, every key lost). Nothing here is a library's code; it is
the pattern the issue describes.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

from ..harness import Subject
from ._peer import plain_id

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["SUBJECTS", "create_app"]

COOKIE_NAME = "session"


class NaivePickleSessions:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path == "/health":
            return self._answer(start_response, b"ok", None)
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        morsel = cookie.get(COOKIE_NAME)
        session_id, session = None, None
        if morsel is not None and morsel.value.isalnum():
            session_id = morsel.value
            session = self.load(session_id)
        is_new = session is None
        if session is None:
            session_id, session = secrets.token_hex(16), {}
        assert session_id is not None
        if path.startswith("/set/") and method == "POST":
            session[path.removeprefix("/set/")] = 1
            self.save(session_id, session)
            return self._answer(start_response, b"ok", session_id)
        if path == "/keys":
            body = json.dumps(sorted(session)).encode()
            return self._answer(start_response, body, session_id if is_new else None)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    def load(self, session_id: str) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.directory, session_id), "rb") as file:
                data = pickle.load(file)
        except Exception:
            return None  # missing, empty, half-written: start over, as so many apps do
        return data if isinstance(data, dict) else None

    def save(self, session_id: str, session: dict[str, Any]) -> None:
        with open(os.path.join(self.directory, session_id), "wb") as file:
            pickle.dump(session, file)

    @staticmethod
    def _answer(start_response: StartResponse, body: bytes, cookie: str | None) -> list[bytes]:
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if cookie is not None:
            headers.append(("Set-Cookie", f"{COOKIE_NAME}={cookie}; Path=/; HttpOnly"))
        start_response("200 OK", headers)
        return [body]


def create_app() -> NaivePickleSessions:
    return NaivePickleSessions(os.environ["BENCH_STORE_DIR"])


SUBJECTS = [
    Subject(
        name="naive-pickle",
        description=(
            "a raw WSGI app with a pickle file per session written in place "
            '(open(path, "wb") + pickle.dump; new session on any load error): the '
            "original bug, gunicorn sync workers"
        ),
        server="gunicorn-sync",
        app=f"{__name__}:create_app",
        settings={"store": "pickle file, truncating write"},
        session_id=plain_id,
        requires=("gunicorn",),
        storage="file",
    )
]
