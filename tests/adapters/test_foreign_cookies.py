"""A cookie the middleware did not sign is not its to delete (issue 11, item 4).

Flask's own session cookie and sessionguard's default cookie are both called `session`.
A Flask app wrapped by the WSGI middleware with default settings keeps its own
`flask.session` working: the middleware ignores a `session` cookie that does not verify
as its own (and never clears it), and when the app itself sets a cookie of that name in
a response, the app's cookie is kept and one ERROR says how to fix the clash.
"""

from __future__ import annotations

import logging
from pathlib import Path

import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionguard import FileStore, asgi
from sessionguard.wsgi import SessionMiddleware, get_session


def flask_app_with_both_sessions(store_dir: Path) -> flask.Flask:
    app = flask.Flask(__name__)
    app.secret_key = "flask-own-secret"

    @app.post("/login")
    def login() -> dict[str, str]:
        flask.session["user"] = "alice"  # Flask's own cookie session
        return {"ok": "yes"}

    @app.get("/whoami")
    def whoami() -> dict[str, str | None]:
        return {"user": flask.session.get("user")}

    @app.post("/both")
    def both() -> dict[str, str]:
        flask.session["theme"] = "dark"
        get_session(flask.request.environ)["cart"] = "book"
        return {"ok": "yes"}

    app.wsgi_app = SessionMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, "sessionguard-secret", store=FileStore(store_dir)
    )
    return app


def test_a_flask_app_keeps_its_own_session_behind_the_default_middleware(
    tmp_path: Path,
) -> None:
    app = flask_app_with_both_sessions(tmp_path / "sessions")
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://testserver") as browser:
        browser.post("/login")
        first = browser.get("/whoami")
        second = browser.get("/whoami")

    assert first.json() == {"user": "alice"} and second.json() == {"user": "alice"}
    for response in (first, second):
        assert "set-cookie" not in response.headers, "Flask's session cookie was cleared"


def test_when_the_app_sets_the_session_cookie_name_its_cookie_is_kept_and_an_error_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = flask_app_with_both_sessions(tmp_path / "sessions")
    transport = httpx.WSGITransport(app=app)
    with (
        caplog.at_level(logging.ERROR, logger="sessionguard"),
        httpx.Client(transport=transport, base_url="http://testserver") as browser,
    ):
        response = browser.post("/both")

    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 1, cookies  # the app's, not a second one of the same name
    with app.test_request_context():
        flask_cookie = cookies[0].split(";", 1)[0].split("=", 1)[1]
        assert app.session_interface.get_signing_serializer(app).loads(flask_cookie) == {  # type: ignore[attr-defined]
            "theme": "dark"
        }
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "'session'" in error.getMessage() and "session_cookie=" in error.getMessage()


async def test_under_asgi_too_the_apps_own_cookie_of_that_name_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def both(request: Request) -> Response:
        request.session["cart"] = "book"
        response = JSONResponse({"ok": "yes"})
        response.set_cookie("session", "the-apps-own")
        return response

    app = Starlette(
        routes=[Route("/both", both, methods=["POST"])],
        middleware=[Middleware(asgi.SessionMiddleware, secret_key="s", store=FileStore(tmp_path))],
    )
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.ERROR, logger="sessionguard"):
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post("/both")

    cookies = response.headers.get_list("set-cookie")
    assert [c.split(";", 1)[0] for c in cookies] == ["session=the-apps-own"]
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
