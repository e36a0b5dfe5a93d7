"""In-process overhead: what a session layer adds to one request, with no sockets.

ASGI apps are called as `await app(scope, receive, send)` with a prebuilt scope, WSGI
apps as `app(environ, start_response)` with a prebuilt environ and the body consumed,
so the numbers are the framework, the session middleware and its store, and nothing
else. Two requests per subject, both carrying the cookie of a seeded ~1 KB session:
a read-only one (the handler reads one key) and a writing one (it sets one key).
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from ..section import Bar, Section, Target
from .measure import Case, Timing, fmt_ratio, fmt_us, markdown_table, paired_ratio, time_cases

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from starlette.requests import Request
    from starlette.responses import Response as StarletteResponse

    from sessionguard.types import ASGIApp, Message

__all__ = ["SESSION", "run"]

SECRET_KEY = "bench-overhead-secret-key-0123456789abcdef"
USER = "alice@example.com"

#: The seeded session: about 1 KB however it is stored (the issue's reference size).
SESSION: dict[str, Any] = {
    "user": USER,
    "user_id": 4711,
    "roles": ["admin", "editor", "viewer"],
    "csrf": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "locale": "en-GB",
    "cart": [{"sku": f"SKU-{i:05d}", "qty": i % 3 + 1, "price": 9.99 + i} for i in range(14)],
    "last_search": "noise cancelling headphones under 200",
}

#: The first benchmark issue's target: a read-only request on FileStore at most this many
#: times the cost of the same request behind Starlette's cookie SessionMiddleware.
TARGET_RATIO = 0.6
#: The request-path issue's targets against the same request behind Starlette's cookie
#: session: (subject, at most this many times, what it is).
PATH_TARGETS = (
    ("sg-asgi-file", 1.0, "Starlette + sessionguard ASGI on FileStore"),
    ("sg-wsgi-memory", 0.25, "raw WSGI + sessionguard on MemoryStore"),
)
#: Rounds of interleaved batches: (full run, quick run).
ROUNDS = {False: 13, True: 3}

Framework = Literal["starlette", "flask", "wsgi"]
_BARE = {"starlette": "starlette-bare", "flask": "flask-bare", "wsgi": "wsgi-bare"}
_COOKIE = {"starlette": "starlette-cookie", "flask": "flask-cookie", "wsgi": "flask-cookie"}


@dataclass(frozen=True)
class Subject:
    name: str
    description: str
    framework: Framework
    is_sessionguard: bool
    #: Builds the app; the argument is a fresh empty directory for a file store.
    build: Callable[[str], Any]
    has_session: bool = True


# -- apps --------------------------------------------------------------------------------


def _starlette(middleware: Sequence[Any], *, has_session: bool) -> ASGIApp:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def read(request: Request) -> StarletteResponse:
        if not has_session:
            return PlainTextResponse("ok")
        session = request.session
        return PlainTextResponse(f"{session.get('user')}:{session.get('counter')}")

    async def write(request: Request) -> StarletteResponse:
        if has_session:
            request.session["counter"] = request.session.get("counter", 0) + 1
        return PlainTextResponse("ok")

    async def seed(request: Request) -> StarletteResponse:
        request.session.update(SESSION)
        return PlainTextResponse("ok")

    routes = [
        Route("/read", read, methods=["GET"]),
        Route("/write", write, methods=["POST"]),
        Route("/seed", seed, methods=["POST"]),
    ]
    app: ASGIApp = Starlette(routes=routes, middleware=list(middleware))
    return app


def _starlette_bare(_: str) -> ASGIApp:
    return _starlette([], has_session=False)


def _starlette_cookie(_: str) -> ASGIApp:
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware

    return _starlette([Middleware(SessionMiddleware, secret_key=SECRET_KEY)], has_session=True)


def _sg_asgi(store: str) -> Callable[[str], ASGIApp]:
    def build(directory: str) -> ASGIApp:
        from starlette.middleware import Middleware

        from sessionguard.asgi import SessionMiddleware

        middleware = Middleware(
            SessionMiddleware, secret_key=SECRET_KEY, store=_store(store, directory)
        )
        return _starlette([middleware], has_session=True)

    return build


#: Stores the apps built so far opened; `run` closes them (FileStore's thread pool).
_OPENED: list[Any] = []


def _store(kind: str, directory: str) -> Any:
    from sessionguard.stores.file import FileStore
    from sessionguard.stores.memory import MemoryStore

    store = MemoryStore() if kind == "memory" else FileStore(directory, durable=kind == "durable")
    _OPENED.append(store)
    return store


def _flask(mode: str, directory: str) -> WSGIApplication:
    from flask import Flask, request, session as flask_session

    from sessionguard.wsgi import SessionMiddleware, get_session

    app = Flask(f"bench_{mode}")
    if mode == "cookie":
        app.secret_key = SECRET_KEY

    def current() -> Any:
        return flask_session if mode == "cookie" else get_session(request.environ)

    @app.get("/read")
    def read() -> str:
        if mode == "bare":
            return "ok"
        session = current()
        return f"{session.get('user')}:{session.get('counter')}"

    @app.post("/write")
    def write() -> str:
        if mode != "bare":
            session = current()
            session["counter"] = session.get("counter", 0) + 1
        return "ok"

    @app.post("/seed")
    def seed() -> str:
        current().update(SESSION)
        return "ok"

    if mode not in ("bare", "cookie"):
        app.wsgi_app = SessionMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, SECRET_KEY, store=_store(mode, directory)
        )
    return app


def _raw_wsgi(store: str | None) -> Callable[[str], WSGIApplication]:
    def build(directory: str) -> WSGIApplication:
        from sessionguard.wsgi import SessionMiddleware, get_session

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            body = b"ok"
            if store is not None:
                session = get_session(environ)
                if environ["PATH_INFO"] == "/read":
                    body = f"{session.get('user')}:{session.get('counter')}".encode()
                elif environ["PATH_INFO"] == "/write":
                    session["counter"] = session.get("counter", 0) + 1
                else:
                    session.update(SESSION)
            headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]

        if store is None:
            return app
        return SessionMiddleware(app, SECRET_KEY, store=_store(store, directory))

    return build


_STARLETTE, _SG_FLASK = "Starlette + sessionguard ASGI", "Flask + sessionguard WSGI"
_RAW_SG = "raw WSGI + sessionguard WSGI"

SUBJECTS: tuple[Subject, ...] = (
    Subject("starlette-bare", "Starlette app, no session", "starlette", False, _starlette_bare,
            False),
    Subject("starlette-cookie", "Starlette + its SessionMiddleware (signed cookie)", "starlette",
            False, _starlette_cookie),
    Subject("sg-asgi-memory", f"{_STARLETTE}, MemoryStore", "starlette", True, _sg_asgi("memory")),
    Subject("sg-asgi-file", f"{_STARLETTE}, FileStore(durable=False)", "starlette", True,
            _sg_asgi("file")),
    Subject("sg-asgi-durable", f"{_STARLETTE}, FileStore(durable=True)", "starlette", True,
            _sg_asgi("durable")),
    Subject("flask-bare", "Flask app, no session", "flask", False, partial(_flask, "bare"), False),
    Subject("flask-cookie", "Flask + its own session (signed cookie)", "flask", False,
            partial(_flask, "cookie")),
    Subject("sg-flask-file", f"{_SG_FLASK}, FileStore(durable=False)", "flask", True,
            partial(_flask, "file")),
    Subject("sg-flask-durable", f"{_SG_FLASK}, FileStore(durable=True)", "flask", True,
            partial(_flask, "durable")),
    Subject("wsgi-bare", "raw WSGI function, no session", "wsgi", False, _raw_wsgi(None), False),
    Subject("sg-wsgi-memory", f"{_RAW_SG}, MemoryStore", "wsgi", True, _raw_wsgi("memory")),
    Subject("sg-wsgi-file", f"{_RAW_SG}, FileStore(durable=False)", "wsgi", True,
            _raw_wsgi("file")),
)  # fmt: skip


# -- calling the apps -------------------------------------------------------------------


@dataclass
class Answer:
    """A response as the set-up and the checks see it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def set_cookie(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "set-cookie"), None)


class Caller:
    """Calls one app in-process: `request` for set-up and checks, `case` for timing."""

    def __init__(self, subject: Subject, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.subject = subject
        self.app = app
        self.loop = loop
        self.cookie = ""

    @property
    def is_asgi(self) -> bool:
        return self.subject.framework == "starlette"

    def _scope(self, method: str, path: str) -> dict[str, Any]:
        headers = [(b"host", b"127.0.0.1:8000")]
        if self.cookie:
            headers.append((b"cookie", self.cookie.encode("latin-1")))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }

    def _environ(self, method: str, path: str) -> dict[str, Any]:
        environ = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "CONTENT_LENGTH": "0",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if self.cookie:
            environ["HTTP_COOKIE"] = self.cookie
        return environ

    def request(self, method: str, path: str) -> Answer:
        if self.is_asgi:
            return self.loop.run_until_complete(self._asgi_request(method, path))
        out = Answer(0, [], b"")

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            out.status, out.headers = int(status.split()[0]), list(headers)
            return lambda data: None

        body = self.app(self._environ(method, path), start_response)
        try:
            out.body = b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()
        return out

    async def _asgi_request(self, method: str, path: str) -> Answer:
        out = Answer(0, [], b"")

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                out.status = message["status"]
                out.headers = [(k.decode(), v.decode()) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                out.body += message.get("body", b"")

        await self.app(self._scope(method, path), receive, send)
        return out

    def case(self, kind: str, method: str, path: str) -> Case:
        name = f"{self.subject.name}/{kind}"
        if self.is_asgi:
            return Case(name, self._asgi_runner(method, path))
        return Case(name, self._wsgi_runner(method, path))

    def _asgi_runner(self, method: str, path: str) -> Callable[[int], int]:
        app, scope = self.app, self._scope(method, path)
        request: Message = {"type": "http.request", "body": b"", "more_body": False}

        async def receive() -> Message:
            return request

        async def send(message: Message) -> None:
            pass

        async def batch(n: int) -> int:
            start = time.perf_counter_ns()
            for _ in range(n):
                await app(dict(scope), receive, send)
            return time.perf_counter_ns() - start

        return lambda n: self.loop.run_until_complete(batch(n))

    def _wsgi_runner(self, method: str, path: str) -> Callable[[int], int]:
        app, environ = self.app, self._environ(method, path)

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            return None

        def batch(n: int) -> int:
            start = time.perf_counter_ns()
            for _ in range(n):
                request = dict(environ)
                request["wsgi.input"] = io.BytesIO()
                body = app(request, start_response)
                for _chunk in body:
                    pass
                close = getattr(body, "close", None)
                if close is not None:
                    close()
            return time.perf_counter_ns() - start

        return batch


def _prepare(caller: Caller) -> None:
    """Seed the session, take its cookie, and check both requests do what they should."""
    subject = caller.subject
    if subject.has_session:
        seeded = caller.request("POST", "/seed")
        cookie = seeded.set_cookie()
        if seeded.status != 200 or cookie is None:
            raise RuntimeError(
                f"{subject.name}: seeding answered {seeded.status}, cookie {cookie!r}"
            )
        caller.cookie = cookie.split(";", 1)[0]
    read = caller.request("GET", "/read")
    expected = f"{USER}:None".encode() if subject.has_session else b"ok"
    if read.status != 200 or read.body != expected:
        raise RuntimeError(f"{subject.name}: read answered {read.status} {read.body[:80]!r}")
    if subject.is_sessionguard and read.set_cookie() is not None:
        raise RuntimeError(f"{subject.name}: a read-only request sent Set-Cookie")
    write = caller.request("POST", "/write")
    if write.status != 200:
        raise RuntimeError(f"{subject.name}: write answered {write.status} {write.body[:80]!r}")
    if subject.is_sessionguard and caller.request("GET", "/read").body != f"{USER}:1".encode():
        raise RuntimeError(f"{subject.name}: the write did not reach the store")


def session_sizes() -> dict[str, int]:
    """How big the seeded session is in each form, in bytes."""
    import base64
    import json

    from sessionguard.codec import Envelope, encode

    return {
        "json": len(json.dumps(SESSION)),
        "sessionguard_envelope": len(encode(Envelope(SESSION, time.time()))),
        "starlette_cookie_b64": len(base64.b64encode(json.dumps(SESSION).encode())),
    }


def run(quick: bool, deadline: float) -> Section:
    started = time.monotonic()
    loop = asyncio.new_event_loop()
    timings: dict[str, Timing] = {}
    errors: dict[str, str] = {}
    with ExitStack() as stack:
        stack.callback(loop.close)
        stack.callback(_close_stores, loop)
        cases: list[Case] = []
        for subject in SUBJECTS:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-overhead-"))
            try:
                app = subject.build(directory)
                caller = Caller(subject, app, loop)
                _prepare(caller)
            except Exception as exc:  # a subject that cannot run is reported, not fatal
                errors[subject.name] = f"{type(exc).__name__}: {exc}"
                continue
            cases += [caller.case("read", "GET", "/read"), caller.case("write", "POST", "/write")]
        timings = time_cases(cases, rounds=ROUNDS[quick], deadline=deadline)
    return _section(timings, errors, quick, time.monotonic() - started)


def _close_stores(loop: asyncio.AbstractEventLoop) -> None:
    while _OPENED:
        loop.run_until_complete(_OPENED.pop().aclose())


def _section(
    timings: Mapping[str, Timing], errors: Mapping[str, str], quick: bool, wall: float
) -> Section:
    def us(name: str, kind: str) -> float:
        timing = timings.get(f"{name}/{kind}")
        return timing.us if timing else float("nan")

    def ratio(name: str, base: str, kind: str) -> float:
        case, against = timings.get(f"{name}/{kind}"), timings.get(f"{base}/{kind}")
        return paired_ratio(case, against) if case and against else float("nan")

    rows, bars = [], []
    for subject in SUBJECTS:
        if subject.name in errors:
            rows.append([subject.name, f"error: {errors[subject.name]}", *[""] * 5])
            continue
        row = [f"**{subject.name}**" if subject.is_sessionguard else subject.name]
        for kind in ("read", "write"):
            value = us(subject.name, kind)
            bare, cookie = _BARE[subject.framework], _COOKIE[subject.framework]
            row += [
                fmt_us(value),
                fmt_ratio(ratio(subject.name, bare, kind)) if subject.name != bare else "1x",
                fmt_ratio(ratio(subject.name, cookie, kind)) if subject.has_session else "n/a",
            ]
            verb = "read-only" if kind == "read" else "writing"
            bars.append(
                Bar(
                    f"in-process {verb} request: µs (lower is better)",
                    subject.name,
                    value,
                    subject.is_sessionguard,
                )
            )
        rows.append(row)
    table = markdown_table(
        [
            "subject",
            "read µs",
            "× bare",
            "× cookie session",
            "write µs",
            "× bare",
            "× cookie session",
        ],
        rows,
    )
    targets = []
    cookie_read = us("starlette-cookie", "read")
    for name in ("sg-asgi-file", "sg-asgi-durable"):
        value, read_ratio = us(name, "read"), ratio(name, "starlette-cookie", "read")
        targets.append(
            Target(
                f"{name}: read-only request <= {TARGET_RATIO}x the same request behind "
                "Starlette's SessionMiddleware",
                f"{read_ratio:.2f}x ({fmt_us(value)} vs {fmt_us(cookie_read)} µs)",
                read_ratio <= TARGET_RATIO,
            )
        )
    for name, limit, what in PATH_TARGETS:
        value, read_ratio = us(name, "read"), ratio(name, "starlette-cookie", "read")
        targets.append(
            Target(
                f"{name} ({what}): read-only request <= {limit}x the same request behind "
                "Starlette's cookie SessionMiddleware",
                f"{read_ratio:.2f}x ({fmt_us(value)} vs {fmt_us(cookie_read)} µs)",
                read_ratio <= limit,
            )
        )
    sizes = session_sizes()
    rounds = max((len(t.batches_ns) for t in timings.values()), default=0)
    descriptions = "; ".join(f"`{s.name}`: {s.description}" for s in SUBJECTS)
    notes = (
        f"Median µs per request over interleaved batches ({rounds} rounds, {wall:.0f} s in all); "
        "ratios are medians of per-round ratios. *× bare*: over the same framework with no session "
        "(`starlette-bare`, `flask-bare`, `wsgi-bare`); *× cookie session*: over Starlette's "
        "`SessionMiddleware` for ASGI rows, Flask's own cookie session for WSGI rows. Read: "
        "`GET /read` returns one key of the seeded session; write: `POST /write` sets one key. "
        f"The session is ~1 KB ({sizes['sessionguard_envelope']} B as sessionguard's envelope, "
        f"{sizes['json']} B as JSON, a {sizes['starlette_cookie_b64']} B cookie payload for "
        "Starlette). A cookie session's write only signs a new cookie; a server-side store "
        f"writes a file (with `durable`, fsyncs it and its directory). {descriptions}."
    )
    return Section(
        key="inprocess-overhead",
        title="In-process overhead per request (no sockets)",
        markdown=f"{table}\n\n{notes}\n",
        data={
            "unit": "µs per request (median of batches)",
            "wall_s": round(wall, 2),
            "session_bytes": sizes,
            "errors": dict(errors),
            "timings": {
                name: {
                    "us": timing.us,
                    "batches_us": [b / 1000 for b in timing.batches_ns],
                    "ops_per_batch": timing.ops_per_batch,
                }
                for name, timing in timings.items()
            },
        },
        targets=targets,
        bars=bars,
    )
