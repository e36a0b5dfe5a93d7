"""The app being switched to: a Starlette (ASGI) or Flask (WSGI) app behind sessionguard.

Both have the same two routes:

```
GET /read     answers dict(session), changes nothing
GET /visit    session["visits"] += 1, answers dict(session)
```

`AppClient` sends exactly the cookies a test gives it (its jar is emptied before every
request), so "a request with only the legacy cookie" means exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import flask
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionguard import asgi, wsgi
from sessionguard.legacy import LegacyCookie
from sessionguard.stores import Store

SECRET = "migrate-tests-secret-key-do-not-use-in-production"
NEW_COOKIE = "sg_session"
BASE_URL = "http://testserver"

Framework = Literal["starlette", "flask"]
FRAMEWORKS: tuple[Framework, ...] = ("starlette", "flask")


def starlette_app(store: Store, legacy: LegacyCookie, session_cookie: str) -> Starlette:
    async def read(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    async def visit(request: Request) -> Response:
        request.session["visits"] = request.session.get("visits", 0) + 1
        return JSONResponse(dict(request.session))

    async def logout(request: Request) -> Response:
        asgi.get_session(request).invalidate()
        return JSONResponse({})

    middleware = Middleware(
        asgi.SessionMiddleware,
        secret_key=SECRET,
        store=store,
        session_cookie=session_cookie,
        legacy=legacy,
    )
    routes = [Route("/read", read), Route("/visit", visit), Route("/logout", logout)]
    return Starlette(routes=routes, middleware=[middleware])


def flask_app(store: Store, legacy: LegacyCookie, session_cookie: str) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/read")
    def read() -> dict[str, Any]:
        return dict(wsgi.get_session(flask.request.environ))

    @app.get("/visit")
    def visit() -> dict[str, Any]:
        session = wsgi.get_session(flask.request.environ)
        session["visits"] = session.get("visits", 0) + 1
        return dict(session)

    @app.get("/logout")
    def logout() -> dict[str, Any]:
        wsgi.get_session(flask.request.environ).invalidate()
        return {}

    app.wsgi_app = wsgi.SessionMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, SECRET, store=store, session_cookie=session_cookie, legacy=legacy
    )
    return app


@dataclass
class AppClient:
    """One async face over either app; each request carries only the cookies given."""

    framework: Framework
    asgi_client: httpx.AsyncClient | None = None
    wsgi_client: httpx.Client | None = None

    async def get(self, path: str, cookies: dict[str, str]) -> httpx.Response:
        header = "; ".join(f"{name}={value}" for name, value in cookies.items())
        headers = {"cookie": header} if header else {}
        if self.asgi_client is not None:
            self.asgi_client.cookies.clear()
            return await self.asgi_client.get(path, headers=headers)
        assert self.wsgi_client is not None
        self.wsgi_client.cookies.clear()
        return self.wsgi_client.get(path, headers=headers)

    async def aclose(self) -> None:
        if self.asgi_client is not None:
            await self.asgi_client.aclose()
        if self.wsgi_client is not None:
            self.wsgi_client.close()


def build_client(
    framework: Framework, store: Store, legacy: LegacyCookie, session_cookie: str = NEW_COOKIE
) -> AppClient:
    if framework == "starlette":
        app = starlette_app(store, legacy, session_cookie)
        transport = httpx.ASGITransport(app=app)
        return AppClient(
            framework, asgi_client=httpx.AsyncClient(transport=transport, base_url=BASE_URL)
        )
    wsgi_app = flask_app(store, legacy, session_cookie)
    return AppClient(
        framework,
        wsgi_client=httpx.Client(transport=httpx.WSGITransport(app=wsgi_app), base_url=BASE_URL),
    )


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each Set-Cookie header of `response` by cookie name (the whole header value)."""
    found: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        found[header.split("=", 1)[0]] = header
    return found


def cookie_value(header: str) -> str:
    """The value in a Set-Cookie header."""
    return header.split(";", 1)[0].split("=", 1)[1]


def is_cleared(header: str) -> bool:
    return "Max-Age=0" in header and cookie_value(header) == ""
