"""The `make run` demo: a Starlette app whose sessions live in ./sessions via sessionguard.

Open http://127.0.0.1:8000/ and reload: the counter survives restarts of the server,
because the data is on disk, not in the cookie. /login regenerates the session id,
/logout deletes the session.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sessionguard import FileStore
from sessionguard.asgi import SessionMiddleware, get_session

# A fixed key is fine for a local demo only; production reads it from the environment.
SECRET_KEY = os.environ.get("SESSIONGUARD_SECRET", "demo-only-change-me")


async def home(request: Request) -> Response:
    visits = request.session.get("visits", 0) + 1
    request.session["visits"] = visits
    user = request.session.get("user", "anonymous")
    return HTMLResponse(
        f"<h1>Hello, {user}</h1><p>Visits in this session: {visits}</p>"
        '<p><a href="/login">log in</a> · <a href="/logout">log out</a></p>'
    )


async def login(request: Request) -> Response:
    get_session(request).regenerate()  # new id at login: defeats session fixation
    request.session["user"] = "demo-user"
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    get_session(request).invalidate()
    return RedirectResponse("/", status_code=303)


app = Starlette(
    routes=[Route("/", home), Route("/login", login), Route("/logout", logout)],
    middleware=[
        Middleware(SessionMiddleware, secret_key=SECRET_KEY, store=FileStore("sessions")),
    ],
)
