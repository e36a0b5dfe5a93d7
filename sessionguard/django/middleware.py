"""`SessionMiddleware`: the drop-in for `django.contrib.sessions.middleware.SessionMiddleware`.

It decides what Django's decides (save when the session was modified, or on every
request with `SESSION_SAVE_EVERY_REQUEST`; never on a 5xx; `Vary: Cookie` when the
session was accessed; the cookie's lifetime from `get_expiry_age()` or
`SESSION_EXPIRE_AT_BROWSER_CLOSE`), and sets the cookie with Django's own
`set_cookie`, so the header reads exactly as Django's. What differs is what can go wrong:

* a store outage, in the view or at the save, is answered with the policy's 503 and
  `Retry-After` (never a 400 or a 500), and the stored data is left as it was;
* a session ended by a concurrent request (a logout) is not an error: the cookie is
  cleared and the response goes out, where Django answers 400 (`SessionInterrupted`);
* a cookie that did not verify is never cleared: it may be another app's.

It runs natively under WSGI and ASGI; under ASGI the save is awaited (`asave()`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.middleware import (
    SessionMiddleware as _DjangoSessionMiddleware,
)
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.utils.cache import patch_vary_headers
from django.utils.http import http_date

from ..cookie import read_cookies
from ..devices import device_of
from ..errors import SessionRefusedError
from ..policy import ErrorResponse
from .config import current_engine
from .store import SessionStore

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ["SessionMiddleware"]

Response = Any  # django.http.HttpResponseBase; Django ships no type hints


class SessionMiddleware:
    """Put `request.session` (a `sessionguard.django.SessionStore`) on every request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        engine = import_module(settings.SESSION_ENGINE)
        store_class = getattr(engine, "SessionStore", None)
        if not (isinstance(store_class, type) and issubclass(store_class, SessionStore)):
            raise ImproperlyConfigured(
                "sessionguard.django.SessionMiddleware needs SESSION_ENGINE = "
                f"'sessionguard.django' (or a subclass of its SessionStore); it is "
                f"{settings.SESSION_ENGINE!r}"
            )
        self.SessionStore: type[SessionStore] = store_class
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Response:
        if self.async_mode:
            return self.__acall__(request)
        self.process_request(request)
        try:
            response = self.get_response(request)
        except SessionRefusedError as exc:
            response = self._refused(request, exc)  # only when nothing converted it to a 500
        return self.process_response(request, response)

    async def __acall__(self, request: HttpRequest) -> Response:
        self.process_request(request)
        try:
            response = await self.get_response(request)
        except SessionRefusedError as exc:
            response = self._refused(request, exc)
        return await self.aprocess_response(request, response)

    # Django's middleware hooks, for code (tests, mostly) that calls them directly.

    def process_request(self, request: HttpRequest) -> None:
        request.session = self._session_for(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> Response | None:
        """A view that let the session's refusal (an outage, say) escape is answered
        with the policy's response, not a logged 500."""
        if isinstance(exception, SessionRefusedError):
            return self._refused(request, exception)
        return None

    def process_response(self, request: HttpRequest, response: Response) -> Response:
        session = getattr(request, "session", None)
        if not isinstance(session, SessionStore):
            # The app put a session of another engine there: Django's rules apply to it.
            return _DjangoSessionMiddleware.process_response(self, request, response)
        if self._should_save(session, response):
            try:
                session.save()
            except (UpdateError, SessionRefusedError):
                pass  # recorded on the session; answered by _finish
        return self._finish(request, response)

    async def aprocess_response(self, request: HttpRequest, response: Response) -> Response:
        session = getattr(request, "session", None)
        if not isinstance(session, SessionStore):
            return _DjangoSessionMiddleware.process_response(self, request, response)
        if self._should_save(session, response):
            try:
                await session.asave()
            except (UpdateError, SessionRefusedError):
                pass
        return self._finish(request, response)

    @staticmethod
    def _refused(request: HttpRequest, exception: SessionRefusedError) -> Response:
        session = getattr(request, "session", None)
        if isinstance(session, SessionStore) and session.refusal is not None:
            return _refusal(session.refusal, request)
        raise exception  # not this request's session: not ours to answer

    def _session_for(self, request: HttpRequest) -> SessionStore:
        """The session the request's cookie names. A browser may send several cookies
        of the name (a sibling subdomain set one too): the first that verifies wins."""
        name = settings.SESSION_COOKIE_NAME
        values = read_cookies(request.META.get("HTTP_COOKIE"), name)
        given = request.COOKIES.get(name)
        if given is not None and given not in values:
            values.insert(0, given)  # set on the request object itself (RequestFactory)
        core = current_engine().core
        key = next((v for v in values if core.signer.unsign(v) is not None), None)
        session = self.SessionStore(key if key is not None else (values[0] if values else None))
        if core.record_devices:
            meta = request.META
            session.device = device_of(meta.get("HTTP_USER_AGENT"), meta.get("REMOTE_ADDR"))
        return session

    @staticmethod
    def _should_save(session: SessionStore, response: Response) -> bool:
        if session.refusal is not None or session.is_empty():
            return False
        # As Django: saved when changed, or always with SESSION_SAVE_EVERY_REQUEST, and
        # never for a 5xx response (the view failed; its changes are not kept).
        wanted = session.modified or settings.SESSION_SAVE_EVERY_REQUEST
        return bool(wanted) and response.status_code < 500

    def _finish(self, request: HttpRequest, response: Response) -> Response:
        session: SessionStore = request.session
        if session.refusal is not None:
            return _refusal(session.refusal, request)
        name = settings.SESSION_COOKIE_NAME
        if session.accessed:
            patch_vary_headers(response, ("Cookie",))
        if session.cookie_action == "set" and session.session_key:
            _set_cookie(response, session)
        elif name in request.COOKIES and session.is_empty() and session.clears_cookie:
            response.delete_cookie(
                name,
                path=settings.SESSION_COOKIE_PATH,
                domain=settings.SESSION_COOKIE_DOMAIN,
                samesite=settings.SESSION_COOKIE_SAMESITE,
            )
            patch_vary_headers(response, ("Cookie",))
        return response


def _set_cookie(response: Response, session: SessionStore) -> None:
    if session.get_expire_at_browser_close():
        max_age, expires = None, None
    else:
        max_age = session.get_expiry_age()
        expires = http_date(time.time() + max_age)
    response.set_cookie(
        settings.SESSION_COOKIE_NAME,
        session.session_key,
        max_age=max_age,
        expires=expires,
        domain=settings.SESSION_COOKIE_DOMAIN,
        path=settings.SESSION_COOKIE_PATH,
        secure=settings.SESSION_COOKIE_SECURE or None,
        httponly=settings.SESSION_COOKIE_HTTPONLY or None,
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )
    patch_vary_headers(response, ("Cookie",))


def _refusal(error: ErrorResponse, request: HttpRequest) -> HttpResponse:
    """The policy's answer in place of the app's response (whose data was not saved)."""
    response = HttpResponse(error.body, status=error.status)
    for name, value in error.headers:
        if name.lower() != "set-cookie":
            response[name] = value
        elif settings.SESSION_COOKIE_NAME in request.COOKIES:
            # The policy rejected the record this (verified) cookie names: clear it, with
            # Django's own attributes.
            response.delete_cookie(
                settings.SESSION_COOKIE_NAME,
                path=settings.SESSION_COOKIE_PATH,
                domain=settings.SESSION_COOKIE_DOMAIN,
                samesite=settings.SESSION_COOKIE_SAMESITE,
            )
    patch_vary_headers(response, ("Cookie",))
    return response
