"""WSGI `SessionMiddleware`: `environ["sessionguard.session"]` for Flask, Django or any WSGI app."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Unpack

from .cookie import SecretKey, vary_on_cookie
from .devices import device_of
from .driver import run_sync
from .options import SessionOptions, build_core, require_user_index
from .policy import ErrorResponse
from .session import Session
from .stores.base import SyncStore
from .stores.file import DEFAULT_DIRECTORY, FileStore

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["ENVIRON_KEY", "SessionMiddleware", "get_session"]

ENVIRON_KEY = "sessionguard.session"


def get_session(environ: WSGIEnvironment) -> Session:
    """The request's `Session` (in Flask: `get_session(request.environ)`)."""
    session = environ.get(ENVIRON_KEY)
    if not isinstance(session, Session):
        raise LookupError(
            f"no sessionguard session in environ[{ENVIRON_KEY!r}]: wrap the WSGI app in "
            "sessionguard.wsgi.SessionMiddleware"
        )
    session.mark_accessed()
    return session


class SessionMiddleware:
    """Loads the session before the app runs and saves it when the app calls `start_response`.

    The same keyword options as the ASGI middleware (and Starlette's). `store` defaults to
    a `FileStore` in `./sessions`.
    """

    def __init__(
        self,
        app: WSGIApplication,
        secret_key: SecretKey,
        *,
        store: SyncStore | None = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        if store is not None and not isinstance(store, SyncStore):
            raise TypeError(
                f"store {store!r} has no blocking API (load/save/...); the WSGI middleware "
                "needs a store such as FileStore, MemoryStore or RedisStore"
            )
        self.app = app
        self.store: SyncStore = store if store is not None else FileStore(DEFAULT_DIRECTORY)
        self.core = build_core(secret_key, **options)
        require_user_index(self.core, self.store)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        opened = run_sync(self.core.open(environ.get("HTTP_COOKIE")), self.store, self.core.events)
        if isinstance(opened, ErrorResponse):
            return _respond(start_response, opened)
        if self.core.record_devices:
            opened._sg.device = device_of(
                environ.get("HTTP_USER_AGENT"), environ.get("REMOTE_ADDR")
            )
        environ[ENVIRON_KEY] = opened
        response = _Response(self, opened, start_response)
        return response.wrap(self.app(environ, response.start_response))


class _Response:
    """One request's response: commits in `start_response`, swaps in a 503 if that fails."""

    def __init__(
        self, middleware: SessionMiddleware, session: Session, start_response: StartResponse
    ) -> None:
        self._middleware = middleware
        self._session = session
        self._start_response = start_response
        self.replacement: ErrorResponse | None = None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
    ) -> Callable[[bytes], object]:
        if exc_info is not None:
            # The app is reporting an error after a first start_response: pass it on unsaved.
            return self._start_response(status, headers, exc_info)
        core, store = self._middleware.core, self._middleware.store
        result = run_sync(core.commit(self._session), store, core.events)
        if isinstance(result, ErrorResponse):
            self.replacement = result
            self._start_response(_status_line(result), list(result.headers))
            return lambda data: None  # the app's body belongs to the response we replaced
        app_cookies = [value for name, value in headers if name.lower() == "set-cookie"]
        result = core.response_cookies(result, app_cookies)
        if self._session.accessed:
            vary = ", ".join(value for name, value in headers if name.lower() == "vary")
            headers = [(n, v) for n, v in headers if n.lower() != "vary"]
            headers.append(("Vary", vary_on_cookie(vary or None)))
        headers = [*headers, *(("Set-Cookie", value) for value in result)]
        return self._start_response(status, headers)

    def wrap(self, body: Iterable[bytes]) -> _Body:
        return _Body(self, body)


class _Body:
    """The iterable handed to the server: the app's body, or the 503 that replaced it.

    A class with `close()` rather than a generator: a server that gives up before
    iterating (the client went away) only calls `close()`, and PEP 3333 says that must
    reach the app's iterable; a generator that never started would not run its `finally`.
    """

    def __init__(self, response: _Response, body: Iterable[bytes]) -> None:
        self._response = response
        self._body = body
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        if self._response.replacement is None:
            for chunk in self._body:
                # A lazy app calls start_response during its first iteration.
                if self._response.replacement is not None:
                    break
                yield chunk
        if self._response.replacement is not None:
            yield self._response.replacement.body

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


def _respond(start_response: StartResponse, response: ErrorResponse) -> list[bytes]:
    start_response(_status_line(response), list(response.headers))
    return [response.body]


def _status_line(response: ErrorResponse) -> str:
    return f"{response.status} {HTTPStatus(response.status).phrase}"
