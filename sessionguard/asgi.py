"""ASGI `SessionMiddleware`: `scope["session"]` for Starlette, FastAPI or any ASGI app.

A drop-in for `starlette.middleware.sessions.SessionMiddleware` (same keyword names),
with the data kept server-side in an async-capable store.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Protocol, Unpack

from .cookie import SecretKey, vary_on_cookie
from .devices import device_of
from .driver import run_async
from .options import SessionOptions, build_core, require_user_index
from .policy import ErrorResponse
from .session import Session
from .stores.base import AsyncStore
from .stores.file import DEFAULT_DIRECTORY, FileStore
from .types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SessionMiddleware", "get_session"]

# Close codes for a websocket refused before it was accepted (RFC 6455, section 7.4.1).
_WS_POLICY_VIOLATION = 1008
_WS_TRY_AGAIN_LATER = 1013


class _HasScope(Protocol):
    @property
    def scope(self) -> Scope: ...


def get_session(request: _HasScope | Scope) -> Session:
    """The typed `Session` of a request (a Starlette `Request`) or a raw scope.

    `request.session` is the same object, but Starlette types it as `dict`, so call
    `get_session(request).regenerate()` where a type checker should see the session API.
    """
    scope = request if isinstance(request, MutableMapping) else request.scope
    session = scope.get("session")
    if not isinstance(session, Session):
        raise LookupError(
            "no sessionguard session in this scope: add sessionguard.asgi.SessionMiddleware "
            "to the app's middleware"
        )
    session.mark_accessed()
    return session


class SessionMiddleware:
    """Loads the session before the app runs and saves it when the response starts.

    HTTP requests get a writable `scope["session"]`; websocket connections get it
    read-only (they cannot send Set-Cookie); lifespan and other scopes pass through.
    `store` defaults to a `FileStore` in `./sessions`.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: SecretKey,
        *,
        store: AsyncStore | None = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        if store is not None and not isinstance(store, AsyncStore):
            raise TypeError(
                f"store {store!r} has no async API (aload/asave/...); the ASGI middleware "
                "needs a store such as FileStore, MemoryStore or RedisStore"
            )
        self.app = app
        self.store: AsyncStore = store if store is not None else FileStore(DEFAULT_DIRECTORY)
        self.core = build_core(secret_key, **options)
        require_user_index(self.core, self.store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cookie = b"; ".join(v for k, v in scope["headers"] if k == b"cookie").decode("latin-1")
        is_websocket = scope["type"] == "websocket"
        opened = await run_async(
            self.core.open(cookie, read_only=is_websocket), self.store, self.core.events
        )
        if isinstance(opened, ErrorResponse):
            if is_websocket:
                code = _WS_TRY_AGAIN_LATER if opened.status == 503 else _WS_POLICY_VIOLATION
                await send({"type": "websocket.close", "code": code})
            else:
                await _send_response(send, opened)
            return
        if self.core.record_devices:
            opened._sg.device = _device(scope)
        scope["session"] = opened
        if is_websocket:
            await self.app(scope, receive, send)
            # After the connection: what it changed in a stored session is saved (no
            # cookie can be sent; a failure is logged by the core, nobody is left to tell).
            await run_async(self.core.commit(opened), self.store, self.core.events)
            return
        await self.app(scope, receive, _CommittingSend(self, opened, send))


class _CommittingSend:
    """Wraps `send`: saves the session at `http.response.start`, before any byte goes out."""

    def __init__(self, middleware: SessionMiddleware, session: Session, send: Send) -> None:
        self._middleware = middleware
        self._session = session
        self._send = send
        self._replaced = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            core, store = self._middleware.core, self._middleware.store
            result = await run_async(core.commit(self._session), store, core.events)
            if isinstance(result, ErrorResponse):
                # The save failed, so the app's response would lie; answer 503 instead.
                self._replaced = True
                await _send_response(self._send, result)
                return
            if result or self._session.accessed:  # else the message goes out as it is
                headers = list(message.get("headers", ()))
                app_cookies = [
                    v.decode("latin-1") for k, v in headers if k.lower() == b"set-cookie"
                ]
                result = core.response_cookies(result, app_cookies)
                if self._session.accessed:
                    headers = _with_vary_cookie(headers)
                message = dict(message)
                cookies = [(b"set-cookie", value.encode("latin-1")) for value in result]
                message["headers"] = [*headers, *cookies]
        elif self._replaced:
            return  # the app's body belongs to the response we replaced
        await self._send(message)


def _device(scope: Scope) -> dict[str, str]:
    agents = [v for k, v in scope["headers"] if k == b"user-agent"]
    client = scope.get("client")
    return device_of(agents[0].decode("latin-1") if agents else None, client[0] if client else None)


def _with_vary_cookie(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if not any(k.lower() == b"vary" for k, _ in headers):
        return [*headers, (b"vary", b"Cookie")]  # the common case, on every request
    vary = b", ".join(v for k, v in headers if k.lower() == b"vary").decode("latin-1")
    others = [(k, v) for k, v in headers if k.lower() != b"vary"]
    return [*others, (b"vary", vary_on_cookie(vary or None).encode("latin-1"))]


async def _send_response(send: Send, response: ErrorResponse) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
