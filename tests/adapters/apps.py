"""Small real apps behind the middlewares, and `AppClient`, one async face for all of them.

Every app has the same routes, so the behaviour tests read the same under every framework:

```
GET  /count    session["count"] += 1, answers {"count": n}
GET  /read     answers dict(session), changes nothing
GET  /noop     answers "ok" without touching the session
POST /login    sets session["user"], calls regenerate(), answers dict(session)
POST /logout   calls invalidate(), answers "bye"
```

The ASGI apps add `GET /stream` (a `StreamingResponse`) and a websocket at `/ws`; the raw
WSGI app adds `GET /lazy` (start_response called on first iteration) and `GET /closing`
(an iterable whose `close()` is recorded). Every app appends the path to `calls` before
doing anything, so a test can prove the app was not called.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, Literal, Unpack

import flask
import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from werkzeug.test import EnvironBuilder

from sessionguard import asgi, wsgi
from sessionguard.errors import StoreUnavailableError
from sessionguard.options import SessionOptions
from sessionguard.session import Session
from sessionguard.stores import FileStore, MemoryStore, Record

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

SECRET = "adapter-tests-secret-key-do-not-use-in-production"
BASE_URL = "http://testserver"

Framework = Literal["starlette", "fastapi", "flask", "raw_wsgi"]
ASGI_FRAMEWORKS: tuple[Framework, ...] = ("starlette", "fastapi")
WSGI_FRAMEWORKS: tuple[Framework, ...] = ("raw_wsgi", "flask")
SecretKey = str | Sequence[str]


class CountingFileStore(FileStore):
    """A real `FileStore` that counts its reads: `load`, and `aload`'s read from the
    kernel's caches when it succeeds (when it cannot, `aload` calls `load`)."""

    loads = 0

    def load(self, key: str) -> Record | None:
        self.loads += 1
        return super().load(key)

    def _load_cached(self, key: str) -> Record | None:
        record = super()._load_cached(key)
        self.loads += 1
        return record


class FlakyMemoryStore(MemoryStore):
    """A `MemoryStore` whose `load` raises `StoreUnavailableError` while `failing` is set."""

    failing = False

    def load(self, key: str) -> Record | None:
        if self.failing:
            raise StoreUnavailableError("injected outage: the session store cannot be read")
        return super().load(key)


AnyStore = FileStore | MemoryStore


def _session(scope_or_environ: Any, key: str) -> Session:
    session = scope_or_environ[key]
    assert isinstance(session, Session)
    return session


# -- ASGI -----------------------------------------------------------------------------


def _lifespan(calls: list[str]) -> Any:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        calls.append("lifespan.startup")
        yield
        calls.append("lifespan.shutdown")

    return lifespan


async def _stream_chunks() -> AsyncIterator[bytes]:
    for part in (b"streamed ", b"in ", b"three parts"):
        yield part


async def _websocket(websocket: WebSocket) -> None:
    await websocket.accept()
    session = _session(websocket.scope, "session")
    await websocket.send_json(dict(session))
    try:
        session["count"] = 999
    except TypeError as exc:
        await websocket.send_text(f"TypeError: {exc}")
    else:
        await websocket.send_text("mutated")
    await websocket.close()


def starlette_app(
    calls: list[str], store: AnyStore, secret_key: SecretKey, **options: Unpack[SessionOptions]
) -> Starlette:
    async def count(request: Request) -> Response:
        calls.append(request.url.path)
        session = request.session
        session["count"] = session.get("count", 0) + 1
        return JSONResponse({"count": session["count"]})

    async def read(request: Request) -> Response:
        calls.append(request.url.path)
        return JSONResponse(dict(request.session))

    async def noop(request: Request) -> Response:
        calls.append(request.url.path)
        return PlainTextResponse("ok")

    async def login(request: Request) -> Response:
        calls.append(request.url.path)
        session = _session(request.scope, "session")
        session["user"] = "alice"
        session.regenerate()
        return JSONResponse(dict(session))

    async def logout(request: Request) -> Response:
        calls.append(request.url.path)
        _session(request.scope, "session").invalidate()
        return PlainTextResponse("bye")

    async def stream(request: Request) -> Response:
        calls.append(request.url.path)
        request.session["streamed"] = True
        return StreamingResponse(_stream_chunks(), media_type="text/plain")

    return Starlette(
        routes=[
            Route("/count", count),
            Route("/read", read),
            Route("/noop", noop),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/stream", stream),
            WebSocketRoute("/ws", _websocket),
        ],
        middleware=[
            Middleware(asgi.SessionMiddleware, secret_key=secret_key, store=store, **options)
        ],
        lifespan=_lifespan(calls),
    )


def fastapi_app(
    calls: list[str], store: AnyStore, secret_key: SecretKey, **options: Unpack[SessionOptions]
) -> FastAPI:
    app = FastAPI(lifespan=_lifespan(calls))

    @app.get("/count")
    async def count(request: Request) -> dict[str, int]:
        calls.append(request.url.path)
        request.session["count"] = request.session.get("count", 0) + 1
        return {"count": request.session["count"]}

    @app.get("/read")
    async def read(request: Request) -> dict[str, Any]:
        calls.append(request.url.path)
        return dict(request.session)

    @app.get("/noop")
    async def noop(request: Request) -> str:
        calls.append(request.url.path)
        return "ok"

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        calls.append(request.url.path)
        session = _session(request.scope, "session")
        session["user"] = "alice"
        session.regenerate()
        return dict(session)

    @app.post("/logout")
    async def logout(request: Request) -> str:
        calls.append(request.url.path)
        _session(request.scope, "session").invalidate()
        return "bye"

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        calls.append(request.url.path)
        request.session["streamed"] = True
        return StreamingResponse(_stream_chunks(), media_type="text/plain")

    app.add_api_websocket_route("/ws", _websocket)
    app.add_middleware(asgi.SessionMiddleware, secret_key=secret_key, store=store, **options)
    return app


# -- WSGI -----------------------------------------------------------------------------


def flask_app(
    calls: list[str], store: AnyStore, secret_key: SecretKey, **options: Unpack[SessionOptions]
) -> flask.Flask:
    app = flask.Flask(__name__)

    def session() -> Session:
        return _session(flask.request.environ, wsgi.ENVIRON_KEY)

    @app.before_request
    def record_call() -> None:
        calls.append(flask.request.path)

    @app.get("/count")
    def count() -> dict[str, int]:
        session()["count"] = session().get("count", 0) + 1
        return {"count": session()["count"]}

    @app.get("/read")
    def read() -> dict[str, Any]:
        return dict(session())

    @app.get("/noop")
    def noop() -> str:
        return "ok"

    @app.post("/login")
    def login() -> dict[str, Any]:
        session()["user"] = "alice"
        session().regenerate()
        return dict(session())

    @app.post("/logout")
    def logout() -> str:
        session().invalidate()
        return "bye"

    # Flask's documented way to add WSGI middleware; mypy sees a method being replaced.
    app.wsgi_app = wsgi.SessionMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, secret_key=secret_key, store=store, **options
    )
    return app


class ClosingBody:
    """A WSGI response iterable that records its `close()` call."""

    def __init__(self, calls: list[str], chunks: list[bytes]) -> None:
        self._calls = calls
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        self._calls.append("closed")


def raw_wsgi_app(calls: list[str]) -> WSGIApplication:
    """A WSGI app with no framework: it reads and writes `environ["sessionguard.session"]`."""

    def lazy(session: Session, start_response: StartResponse) -> Iterator[bytes]:
        # A generator app: nothing runs, start_response included, until the first next().
        session["lazy"] = True
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"lazy "
        yield b"body"

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        calls.append(path)
        session = _session(environ, wsgi.ENVIRON_KEY)
        if path == "/lazy":
            return lazy(session, start_response)
        body: Any
        if path == "/count":
            session["count"] = session.get("count", 0) + 1
            body = {"count": session["count"]}
        elif path == "/read":
            body = dict(session)
        elif path == "/noop":
            body = "ok"
        elif path == "/login":
            session["user"] = "alice"
            session.regenerate()
            body = dict(session)
        elif path == "/logout":
            session.invalidate()
            body = "bye"
        elif path == "/closing":
            session["closing"] = True
            start_response("200 OK", [("Content-Type", "text/plain")])
            return ClosingBody(calls, [b"closing ", b"body"])
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        data = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response("200 OK", headers)
        return [data]

    return app


# -- one client for every app -----------------------------------------------------------


@dataclass
class AppClient:
    """An app behind its middleware, reached through httpx; async whatever the adapter.

    Cookies are sent as a raw `Cookie` header (`cookie=`), never through httpx's cookie
    jar, so a test controls every byte. Under WSGI, a `bytes` cookie (NUL, non-ASCII) is
    handed to the app directly: httpx's WSGI transport only passes ASCII headers.
    """

    framework: Framework
    calls: list[str]
    store: AnyStore
    app: Any
    asgi_client: httpx.AsyncClient | None = None
    wsgi_client: httpx.Client | None = None

    @property
    def is_asgi(self) -> bool:
        return self.framework in ASGI_FRAMEWORKS

    async def request(
        self, method: str, path: str, *, cookie: str | bytes | None = None
    ) -> httpx.Response:
        raw = cookie.encode("ascii") if isinstance(cookie, str) else cookie
        headers = [] if raw is None else [(b"cookie", raw)]
        if self.asgi_client is not None:
            return await self.asgi_client.request(method, path, headers=headers)
        if isinstance(cookie, bytes):
            return self._call_wsgi(method, path, cookie.decode("latin-1"))
        assert self.wsgi_client is not None
        return self.wsgi_client.request(method, path, headers=headers)

    async def get(self, path: str, *, cookie: str | bytes | None = None) -> httpx.Response:
        return await self.request("GET", path, cookie=cookie)

    async def post(self, path: str, *, cookie: str | bytes | None = None) -> httpx.Response:
        return await self.request("POST", path, cookie=cookie)

    def _call_wsgi(self, method: str, path: str, cookie: str) -> httpx.Response:
        environ = EnvironBuilder(path=path, method=method, base_url=BASE_URL).get_environ()
        environ["HTTP_COOKIE"] = cookie  # a WSGI "bytes as latin-1" str, any code points
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started.append((status, headers))
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        status, headers = started[-1]
        return httpx.Response(int(status.split()[0]), headers=headers, content=body)

    async def aclose(self) -> None:
        if self.asgi_client is not None:
            await self.asgi_client.aclose()
        if self.wsgi_client is not None:
            self.wsgi_client.close()


def _no_jar() -> CookieJar:
    """A cookie jar that stores nothing: each test sends exactly the cookies it means to."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def build_client(
    framework: Framework,
    store: AnyStore,
    secret_key: SecretKey = SECRET,
    **options: Unpack[SessionOptions],
) -> AppClient:
    calls: list[str] = []
    if framework in ASGI_FRAMEWORKS:
        factory = starlette_app if framework == "starlette" else fastapi_app
        asgi_app = factory(calls, store, secret_key, **options)
        transport = httpx.ASGITransport(app=asgi_app)
        client = httpx.AsyncClient(transport=transport, base_url=BASE_URL, cookies=_no_jar())
        return AppClient(framework, calls, store, asgi_app, asgi_client=client)
    wsgi_app: WSGIApplication
    if framework == "flask":
        wsgi_app = flask_app(calls, store, secret_key, **options)
    else:
        wsgi_app = wsgi.SessionMiddleware(
            raw_wsgi_app(calls), secret_key=secret_key, store=store, **options
        )
    sync_client = httpx.Client(
        transport=httpx.WSGITransport(app=wsgi_app), base_url=BASE_URL, cookies=_no_jar()
    )
    return AppClient(framework, calls, store, wsgi_app, wsgi_client=sync_client)


# -- Set-Cookie -----------------------------------------------------------------------


@dataclass(frozen=True)
class SetCookie:
    """One parsed Set-Cookie header: attribute names lower-cased, flags map to ""."""

    name: str
    value: str
    attributes: dict[str, str]

    @property
    def session_id(self) -> str:
        return self.value.split(".", 1)[0]

    @property
    def clears(self) -> bool:
        return self.value == "" and self.attributes.get("max-age") == "0"


def parse_set_cookie(header: str) -> SetCookie:
    first, *rest = header.split(";")
    name, _, value = first.strip().partition("=")
    attributes: dict[str, str] = {}
    for part in rest:
        key, _, attr_value = part.strip().partition("=")
        attributes[key.lower()] = attr_value
    return SetCookie(name, value, attributes)


def session_set_cookie(response: httpx.Response, name: str = "session") -> SetCookie | None:
    """The response's Set-Cookie for `name` (asserting there is at most one), or `None`."""
    found = [
        cookie
        for cookie in map(parse_set_cookie, response.headers.get_list("set-cookie"))
        if cookie.name == name
    ]
    assert len(found) <= 1, f"several Set-Cookie headers for {name!r}: {found}"
    return found[0] if found else None


def cookie_header(value: str, name: str = "session") -> str:
    return f"{name}={value}"
