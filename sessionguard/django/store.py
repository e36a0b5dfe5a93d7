"""`SessionStore`: Django's `SessionBase` contract on sessionguard's core and stores.

The session key Django hands around (`request.session.session_key`, the `sessionid`
cookie) is sessionguard's signed id, so a key that `SECRET_KEY` (or one of
`SECRET_KEY_FALLBACKS`) did not sign never reaches the store. The data is a sessionguard
`Session`, which records the keys a request set and deleted, so `save()` applies exactly
those on top of whatever concurrent requests saved meanwhile.

Every method that touches the store has a native async twin (`aload`, `asave`, ...):
both run the same core flow, one with blocking store calls and one awaiting them.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NoReturn, TypeVar

from django.contrib.sessions.backends.base import (
    CreateError,
    SessionBase,
    UpdateError,
)

from ..cookie import new_id
from ..core import Saved
from ..driver import run_async, run_sync
from ..errors import SessionRefusedError
from ..ops import Flow
from ..policy import ErrorResponse
from ..session import Session, saved_as
from .config import Engine, current_engine

__all__ = ["SessionStore"]

_T = TypeVar("_T")
_NOT_GIVEN: Any = object()


class SessionStore(SessionBase):  # type: ignore[misc]
    """A Django session engine (`SESSION_ENGINE = "sessionguard.django"`).

    Beyond Django's contract: `save()` merges this request's changed keys into the
    newest stored data instead of overwriting it; `cycle_key()` leaves a forward pointer
    at the old key, so requests in flight keep their changes while nobody can open the
    new session with the old key; `flush()` deletes unconditionally, so a slower
    concurrent request never brings the session back (its `save()` raises
    `UpdateError`). A value changed in place (`session["cart"].append(x)`) is found at
    the save by comparing with what was loaded, so it is saved whenever Django would
    save the session (`modified = True`, `SESSION_SAVE_EVERY_REQUEST`), as only a change
    of that key.
    """

    # For the type checker only: SessionBase (untyped) defines them.
    _session_cache: Session
    _session_key: str | None
    session_key: str | None

    def __init__(self, session_key: str | None = None) -> None:
        self._engine: Engine = current_engine()
        self._changed = False  # Django's `modified`
        # The data as stored, to find values changed in place (`session["cart"].append(x)`)
        # that the session's own bookkeeping cannot see.
        self._stored: dict[str, Any] = {}
        #: The policy's response when the store could not be used; the middleware sends it.
        self.refusal: ErrorResponse | None = None
        #: The last save's word on the cookie: "set" it, "clear" it, or leave it (None).
        self.cookie_action: Literal["set", "clear"] | None = None
        self._clear_cookie = False  # the request's cookie leads nowhere (and is ours)
        #: The request's device, set by the middleware when the engine records devices.
        self.device: dict[str, str] | None = None
        super().__init__(session_key)

    # -- Django's `modified` -----------------------------------------------------------------

    @property
    def modified(self) -> bool:
        return self._changed

    @modified.setter
    def modified(self, value: bool) -> None:
        self._changed = bool(value)
        if not value:
            session = self.__dict__.get("_session_cache")
            if isinstance(session, Session):
                session.modified = False

    # -- the data: a sessionguard Session, changed only through its tracking methods -----

    def _get_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        session = self._cached(no_load)
        if session is None:
            session = self._session_cache = self.load()
        return session

    async def _aget_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        session = self._cached(no_load)
        if session is None:
            session = self._session_cache = await self.aload()
        return session

    def _cached(self, no_load: bool) -> Session | None:
        """The session if it needs no load (loaded already, or new); `None` otherwise."""
        try:
            return self._session_cache
        except AttributeError:
            if self.session_key is None or no_load:
                self._session_cache = Session()
                return self._session_cache
            return None

    _session = property(_get_session)

    def __setitem__(self, key: str, value: Any) -> None:
        self._session[key] = value
        self._changed = True

    async def aset(self, key: str, value: Any) -> None:
        (await self._aget_session())[key] = value
        self._changed = True

    def __delitem__(self, key: str) -> None:
        del self._session[key]
        self._changed = True

    def pop(self, key: str, default: Any = _NOT_GIVEN) -> Any:
        return _pop(self._session, key, default, self._note_change)

    async def apop(self, key: str, default: Any = _NOT_GIVEN) -> Any:
        return _pop(await self._aget_session(), key, default, self._note_change)

    def update(self, dict_: Any) -> None:
        self._session.update(dict_)
        self._changed = True

    async def aupdate(self, dict_: Any) -> None:
        (await self._aget_session()).update(dict_)
        self._changed = True

    def clear(self) -> None:
        # Loads first (Django's does not): a save deletes exactly the keys that were
        # there, so keys concurrent requests add meanwhile survive.
        self._session.clear()
        self._changed = True

    def _note_change(self) -> None:
        self._changed = True

    # -- keys ----------------------------------------------------------------------------

    def _get_new_session_key(self) -> str:
        # 160 random bits, signed: never checked against the store (no collision to fear).
        return self._engine.core.signer.sign(new_id())

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    @property
    def clears_cookie(self) -> bool:
        """The request's session cookie should go: it was ours and leads nowhere now
        (expired, flushed, or ended by a concurrent logout). A cookie that did not verify
        is never cleared: it may be another app's."""
        return self._clear_cookie

    # -- SessionBase: the storage methods, sync ------------------------------------------

    def load(self) -> Session:
        values = [self.session_key] if self.session_key else []
        return self._opened(self._sync(self._engine.core.open_values(values)))

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        return self._answer(self._sync(self._engine.core.exists(session_key)))

    def create(self) -> None:
        self._saved(self._sync(self._create_flow()), create=True)

    def save(self, must_create: bool = False) -> None:
        session = self._prepare(must_create, self._session if self.session_key else None)
        if session == "create":
            return self.create()
        if session == "nothing":
            return None
        lifetime = self.get_expiry_age()
        self._saved(self._sync(self._engine.core.save(session, lifetime=lifetime)))

    def delete(self, session_key: str | None = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key:
            self._answer(self._sync(self._engine.core.end(key)))

    def cycle_key(self) -> None:
        session = self._session
        if session._sg.loaded is None:
            return self.create()  # nothing stored under the old key: just a new one
        session.regenerate(carry_in_flight=self._engine.carry_in_flight)
        lifetime = self.get_expiry_age()
        if not self._cycled(self._sync(self._engine.core.save(session, lifetime=lifetime))):
            self.create()

    def flush(self) -> None:
        old = self._flushed()
        if old:
            self.delete(old)

    @classmethod
    def clear_expired(cls) -> None:
        current_engine().store.purge_expired()

    # -- SessionBase: the storage methods, async -----------------------------------------

    async def aload(self) -> Session:
        values = [self.session_key] if self.session_key else []
        return self._opened(await self._async(self._engine.core.open_values(values)))

    async def aexists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        return self._answer(await self._async(self._engine.core.exists(session_key)))

    async def acreate(self) -> None:
        self._saved(await self._async(self._create_flow()), create=True)

    async def asave(self, must_create: bool = False) -> None:
        current = await self._aget_session() if self.session_key else None
        session = self._prepare(must_create, current)
        if session == "create":
            return await self.acreate()
        if session == "nothing":
            return None
        lifetime = await self.aget_expiry_age()
        self._saved(await self._async(self._engine.core.save(session, lifetime=lifetime)))

    async def adelete(self, session_key: str | None = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key:
            self._answer(await self._async(self._engine.core.end(key)))

    async def acycle_key(self) -> None:
        session = await self._aget_session()
        if session._sg.loaded is None:
            return await self.acreate()
        session.regenerate(carry_in_flight=self._engine.carry_in_flight)
        lifetime = await self.aget_expiry_age()
        if not self._cycled(await self._async(self._engine.core.save(session, lifetime=lifetime))):
            await self.acreate()

    async def aflush(self) -> None:
        old = self._flushed()
        if old:
            await self.adelete(old)

    @classmethod
    async def aclear_expired(cls) -> None:
        await current_engine().store.apurge_expired()

    # -- shared by the two -----------------------------------------------------------------

    def _sync(self, flow: Flow[_T]) -> _T:
        engine = self._engine
        return run_sync(flow, engine.store, engine.core.events)

    def _async(self, flow: Flow[_T]) -> Awaitable[_T]:
        engine = self._engine
        return run_async(flow, engine.store, engine.core.events)

    def _refuse(self, response: ErrorResponse) -> NoReturn:
        self.refusal = response
        reason = response.body.decode("utf-8", "replace").strip()
        raise SessionRefusedError(response.status, reason)

    def _answer(self, result: _T | ErrorResponse) -> _T:
        if isinstance(result, ErrorResponse):
            self._refuse(result)
        return result

    def _opened(self, opened: Session | ErrorResponse) -> Session:
        session = self._answer(opened)
        if session._sg.loaded is None:
            # Unknown, expired, forged or adopted: Django never reuses such a key (a
            # client must not choose its session key); a new one comes with the save.
            self._session_key = None
            self._clear_cookie = session._sg.stale_cookie
        else:
            self._stored = copy.deepcopy(dict(session))
        if session.modified:
            self._changed = True  # adopted from the old engine: the save completes it
        return session

    def _prepare(
        self, must_create: bool, session: Session | None
    ) -> Session | Literal["create", "nothing"]:
        """The session to save (`session`, loaded by the caller when there was a key), or
        what to do instead."""
        if session is None:
            return "create"
        if session._sg.loaded is None:
            # The key led nowhere (expired, ended, forged; load dropped it). What this
            # request put in the session goes under a new key, but an untouched empty
            # session is not stored: with SESSION_SAVE_EVERY_REQUEST, every request
            # with a dead or forged cookie would otherwise leave an empty record.
            return "create" if session or self._changed else "nothing"
        if must_create:
            raise CreateError("this session is stored already; save() it instead")
        for key, value in session.items():
            if key not in session._sg.set_keys and self._stored.get(key, _NOT_GIVEN) != value:
                session[key] = value  # changed in place: Django saves it, and so do we
        session._sg.device = self.device
        return session

    def _create_flow(self) -> Flow[Saved | ErrorResponse]:
        # A new record under a new key holding the current data, as Django's create() does.
        current = self.__dict__.get("_session_cache")
        fresh = Session()
        if current:
            fresh.update(current)
        fresh._sg.device = self.device
        self._session_cache = fresh
        return self._engine.core.save(fresh, lifetime=self.get_expiry_age())

    def _saved(self, result: Saved | ErrorResponse, *, create: bool = False) -> None:
        saved = self._answer(result)
        session: Session = self._session_cache
        if saved.stored is None:
            if saved.cookie is not None:
                # Deleted meanwhile (a logout in another request, expiry): it stays so.
                self._session_key = None
                self._session_cache = Session()
                self._clear_cookie = True
                self.cookie_action = "clear"
                raise UpdateError
            return  # refreshed nothing: the record moved on without this request
        if saved.forwarded:
            # Merged into the session's new key, which this request must never learn.
            session._sg.set_keys.clear()
            session._sg.deleted_keys.clear()
            self.cookie_action = None
            return
        saved_as(session, saved.stored, saved.data)
        self._stored = copy.deepcopy(dict(session))
        self._session_key = self._engine.core.signer.sign(saved.stored.key)
        self._clear_cookie = False
        self.cookie_action = "set"
        if create:
            self._changed = True  # as Django's create(): the middleware sends the cookie

    def _cycled(self, result: Saved | ErrorResponse) -> bool:
        """Apply a `cycle_key()` save; False when the session must be created anew."""
        data = dict(self._session_cache)
        try:
            self._saved(result)
        except UpdateError:
            # Ended by a concurrent logout while this request regenerated it (a login,
            # say): that session stays gone, and this request's data starts a new one.
            self._session_cache.update(data)
            return False
        return True

    def _flushed(self) -> str | None:
        """Forget the session here; return the key whose record must go."""
        old = self.session_key
        self._session_cache = Session()
        self._session_key = None
        self._changed = True
        self.accessed = True
        self._clear_cookie = True
        return old


def _pop(session: Session, key: str, default: Any, changed: Callable[[], None]) -> Any:
    if key in session:
        changed()
        return session.pop(key)
    if default is _NOT_GIVEN:
        raise KeyError(key)
    return default
