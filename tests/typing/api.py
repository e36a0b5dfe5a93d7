"""The README's examples, checked by mypy only (never run by pytest)."""

from __future__ import annotations

from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import sessionguard
from sessionguard import CorruptionPolicy, FileStore, MemoryStore
from sessionguard.asgi import SessionMiddleware, get_session
from sessionguard.flask import SessionInterface, get_session as flask_get_session
from sessionguard.wsgi import (
    SessionMiddleware as WSGISessionMiddleware,
    get_session as wsgi_session,
)


async def homepage(request: Request) -> JSONResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JSONResponse({"visits": request.session["visits"]})


async def login(request: Request) -> JSONResponse:
    session = get_session(request)
    session.regenerate()
    session["user"] = "alice"
    return JSONResponse({"id_changed": True})


starlette_app = Starlette(
    routes=[Route("/", homepage), Route("/login", login)],
    middleware=[Middleware(SessionMiddleware, secret_key="...", store=FileStore("sessions"))],
)

flask_app = Flask(__name__)
flask_app.wsgi_app = WSGISessionMiddleware(  # type: ignore[method-assign]  # Flask documents this assignment
    flask_app.wsgi_app,
    secret_key=["new-key", "old-key"],
    store=FileStore("sessions", durable=False),
    policy=CorruptionPolicy("reject"),
    https_only=True,
)


@flask_app.get("/")
def flask_home() -> dict[str, int]:
    from flask import request

    session = wsgi_session(request.environ)
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"]}


memory: sessionguard.Store = MemoryStore()
file_store: sessionguard.Store = FileStore("sessions")


# The Flask quick start: flask.session itself becomes the sessionguard session.
interface_app = Flask(__name__)
interface_app.secret_key = "change-me"
interface_app.session_interface = SessionInterface(store=FileStore("sessions"))


@interface_app.get("/")
def interface_home() -> dict[str, int]:
    from flask import session as flask_session

    flask_session["visits"] = flask_session.get("visits", 0) + 1
    visits: int = flask_session["visits"]
    flask_get_session().regenerate()
    return {"visits": visits}
