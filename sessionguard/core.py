"""The sans-IO session logic both adapters share.

The core never touches a store. `SessionCore.open` and `SessionCore.commit` are
generator *flows*, after httpx's `Auth.auth_flow`: they yield store operations
(`sessionguard.ops`: `Load`, `Save`, ...) and receive the results, and
`sessionguard.driver` runs them with a sync or an async store. So the open -> policy ->
session -> save/touch -> Set-Cookie sequence, the compare-and-swap retry and the
changed-key merge exist exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .codec import Envelope, Serializer, encode, record_keys
from .cookie import DEFAULT_MAX_AGE, CookieSettings, SecretKey, Signer, read_cookies
from .decisions import CARRY_MARK, Carried, Carry, Merge, Merged, Move, Moved
from .errors import (
    ConfigurationError,
    ConflictError,
    CorruptSessionError,
    SessionTooLargeError,
    StoreUnavailableError,
)
from .events import Event, EventBus, EventKind, Hook
from .ops import (
    Delete,
    Flow,
    Load,
    Quarantine,
    Save,
    Touch,
    Update,
    Updated,
    key_hash,
)
from .policy import CorruptionEvent, CorruptionPolicy, ErrorResponse
from .record import decode_record
from .session import Loaded, Session
from .stores.base import ABSENT, Record, Write

__all__ = ["Saved", "SessionCore", "UnsignedRecords"]

#: What to do with a record that carries no signature (written by sessionguard 0.1): read
#: it (and sign it at its next write), or treat it as corrupt.
UnsignedRecords = Literal["accept", "reject"]


@dataclass(frozen=True, slots=True)
class Saved:
    """Where a save left the session (see `SessionCore.save`)."""

    #: The Set-Cookie header value to send, if any.
    cookie: str | None
    #: The record that now holds the session: `None` when none does (deleted meanwhile,
    #: emptied, or never stored), or when this request cannot know (see `_refresh`).
    stored: Loaded | None = None
    #: What that record holds, when a merge made it differ from the session's own data.
    data: dict[str, Any] | None = None
    #: Merged into the session's regenerated id, whose cookie this request must not send.
    forwarded: bool = False


logger = logging.getLogger("sessionguard")
security_logger = logging.getLogger("sessionguard.security")


class SessionCore:
    """Session behaviour, configured once per middleware."""

    def __init__(
        self,
        secret_key: SecretKey,
        *,
        cookie: CookieSettings,
        policy: CorruptionPolicy,
        idle_timeout: int | None,
        absolute_timeout: int | None,
        save_every_request: bool,
        serializer: Serializer = "msgpack",
        merge: bool = True,
        max_attempts: int = 8,
        regenerate_grace: int = 30,
        hooks: Sequence[Hook] = (),
        max_size: int = 64 * 1024,
        unsigned_records: UnsignedRecords = "accept",
        keep_empty: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = Signer(secret_key)
        # Records are signed with the newest secret and verified against all of them.
        self.record_keys = record_keys(self.signer.secrets)
        if unsigned_records not in ("accept", "reject"):
            raise ConfigurationError(
                f"unsigned_records must be 'accept' or 'reject', got {unsigned_records!r}"
            )
        self.accept_unsigned = unsigned_records == "accept"
        self.cookie = cookie
        self.policy = policy
        if (idle_timeout is not None and idle_timeout <= 0) or (
            absolute_timeout is not None and absolute_timeout <= 0
        ):
            raise ConfigurationError("idle_timeout and absolute_timeout must be positive seconds")
        if idle_timeout is None:
            # As in Starlette, a session lasts max_age; None (a browser-session cookie)
            # still ends on the server after 14 idle days, and a max_age of 0 or less means
            # the session ends with the request (its record is stored already expired).
            max_age = cookie.max_age
            idle_timeout = DEFAULT_MAX_AGE if max_age is None else max(max_age, 0)
        self.idle_timeout = idle_timeout
        # None: no cap on a session's age (Django's engines have none).
        self.absolute_timeout = absolute_timeout
        # Store a session that was emptied, or saved empty, instead of deleting it (Django
        # stores what `save()` is asked to store; the middlewares never store empties).
        self.keep_empty = keep_empty
        if serializer not in ("msgpack", "json"):
            raise ConfigurationError(f"serializer must be 'msgpack' or 'json', got {serializer!r}")
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts!r}")
        if max_size < 1:
            raise ConfigurationError(f"max_size must be a positive byte count, got {max_size!r}")
        self.max_size = max_size
        self.save_every_request = save_every_request
        self.serializer: Serializer = serializer
        self.merge = merge
        self.max_attempts = max_attempts
        self.regenerate_grace = regenerate_grace
        self.events = EventBus(hooks)
        self.clock = clock
        # What `open` hands the app: a `Session`, or a subclass an integration needs (the
        # Flask interface's adds Flask's `SessionMixin`).
        self.session_class: type[Session] = Session

    # -- opening ------------------------------------------------------------------------

    def open(
        self, cookie_header: str | None, *, read_only: bool = False
    ) -> Flow[Session | ErrorResponse]:
        """Flow: read the cookie, load and check the record, and return the request's session.

        Returns an `ErrorResponse` when the policy rejects a corrupt record or the store is
        unavailable; the app must then not be called.
        """
        values = read_cookies(cookie_header, self.cookie.name)
        return (yield from self._open_guarded(values, cookie_header, read_only))

    def open_values(
        self, values: Sequence[str], *, read_only: bool = False
    ) -> Flow[Session | ErrorResponse]:
        """`open` for an integration that has the cookie's values rather than the header
        (Django's `SessionStore(session_key)`)."""
        return (yield from self._open_guarded(list(values), None, read_only))

    def _open_guarded(
        self, values: list[str], cookie_header: str | None, read_only: bool
    ) -> Flow[Session | ErrorResponse]:
        try:
            return (yield from self._open_values(values, cookie_header, read_only))
        except StoreUnavailableError as exc:
            self._log_unavailable("load", None, exc)
            return self.policy.unavailable_response(exc)

    def _open_values(
        self, values: list[str], cookie_header: str | None, read_only: bool
    ) -> Flow[Session | ErrorResponse]:
        # Several values when a sibling subdomain or another path set one too: the first
        # that verifies is ours, and the others are never looked up or cleared.
        key = next((k for v in values if (k := self.signer.unsign(v)) is not None), None)
        if not values:
            return self.session_class(read_only=read_only)
        if key is None:
            # Forged, garbled, oversized, signed with a retired key, or another app's
            # cookie of the same name (Flask's is "session" too): never looked up, and
            # never cleared either, since it may not be ours to delete.
            security_logger.info(
                "session cookie rejected: bad format or signature",
                extra={"event": EventKind.REJECTED_COOKIE},
            )
            self._emit(EventKind.REJECTED_COOKIE)
            return self.session_class(read_only=read_only)
        record: Record | None = yield Load(key)
        if record is None:
            self._emit(EventKind.EXPIRED, key, "missing")  # idle-expired, purged or logged out
            return self._fresh(read_only, stale_cookie=True)
        try:
            envelope = self.decode_record(record)
        except CorruptSessionError as exc:
            return (yield from self._corrupt(key, record, exc, read_only))
        if envelope.moved_to is not None:
            # The id was regenerated. Following the pointer here would hand the new id to
            # whoever holds the old one (session fixation), so this request starts fresh.
            return self.session_class(read_only=read_only)
        if self.absolute_timeout is not None and (
            envelope.created_at + self.absolute_timeout <= self.clock()
        ):
            self._emit(EventKind.EXPIRED, key, "absolute")
            yield Delete(key, expected_version=record.version)
            return self._fresh(read_only, stale_cookie=True)
        loaded = Loaded(key, record.version, envelope.created_at, record.expires_at)
        return self.session_class(envelope.data, loaded=loaded, read_only=read_only)

    def _fresh(self, read_only: bool, *, stale_cookie: bool) -> Session:
        session = self.session_class(read_only=read_only)
        session._sg.stale_cookie = stale_cookie
        return session

    def _corrupt(
        self, key: str, record: Record, exc: CorruptSessionError, read_only: bool
    ) -> Flow[Session | ErrorResponse]:
        event = CorruptionEvent(exc.reason, key_hash(key), exc.detail)
        logger.warning(
            "corrupt session record %s (%s): %s",
            event.key_hash,
            event.reason,
            event.detail,
            extra={"event": EventKind.CORRUPT, "session": event.key_hash, "reason": event.reason},
        )
        self._emit(EventKind.CORRUPT, key, str(exc.reason))
        action = self.policy.decide(event)
        if self.policy.quarantine_dir is not None:
            name = f"{event.key_hash}-{event.reason}-{int(self.clock())}.bin"
            yield Quarantine(self.policy.quarantine_dir, name, record, key)
        elif action == "reset":
            # Only this exact record: a concurrent request may already have replaced it.
            yield Delete(key, expected_version=record.version)
        if action == "reject":
            return self.policy.reject_response(self.cookie.clear_header())
        return self._fresh(read_only, stale_cookie=True)

    # -- one id, for integrations that expose the store (Django's `exists`, `delete`) -----

    def exists(self, value: str) -> Flow[bool | ErrorResponse]:
        """Flow: whether the cookie value `value` leads to a stored session (a forward
        pointer left by a regenerate does not; a corrupt record does, since something is
        stored there). A value that does not verify is never looked up."""
        key = self.signer.unsign(value)
        if key is None:
            return False
        try:
            record: Record | None = yield Load(key)
        except StoreUnavailableError as exc:
            self._log_unavailable("load", key, exc)
            return self.policy.unavailable_response(exc)
        if record is None:
            return False
        try:
            return self.decode_record(record).moved_to is None
        except CorruptSessionError:
            return True

    def end(self, value: str) -> Flow[bool | ErrorResponse]:
        """Flow: delete the session the cookie value `value` names, whatever concurrent
        requests wrote to it (logout wins). A value that does not verify is never looked
        up. Returns whether a record was deleted."""
        key = self.signer.unsign(value)
        if key is None:
            return False
        self._emit(EventKind.INVALIDATE, key)
        try:
            deleted: bool = yield Delete(key)
        except StoreUnavailableError as exc:
            self._log_unavailable("delete", key, exc)
            return self.policy.unavailable_response(exc)
        return deleted

    # -- committing ---------------------------------------------------------------------

    def commit(self, session: Session) -> Flow[tuple[str, ...] | ErrorResponse]:
        """Flow: persist what the request changed; return the Set-Cookie values to send.

        Returns an `ErrorResponse` (503) when the store is unavailable or concurrent
        writers kept winning; the stored data is then as it was.

        A websocket's session (`read_only`: no cookie can be sent) is saved only if it was
        stored before: a new one would be unreachable without its cookie, so it is
        dropped, with a debug line. Nothing is returned for it.
        """
        if session.read_only and session._sg.loaded is None:
            if session.modified:
                logger.debug("a new session changed over a websocket was not saved (no cookie)")
            return ()
        saved = yield from self.save(session)
        if isinstance(saved, ErrorResponse):
            return saved
        if session.read_only:
            return ()  # saved server-side; a websocket cannot carry a cookie
        cookies = (saved.cookie,) if saved.cookie is not None else ()
        return (*cookies, session._sg.legacy_clear) if session._sg.legacy_clear else cookies

    def save(
        self, session: Session, *, lifetime: float | None = None
    ) -> Flow[Saved | ErrorResponse]:
        """Flow: persist what the request changed; return where the session now is.

        `commit` for an integration that saves more than once in a request (Django's
        `save()` and `cycle_key()`): the `Saved` result says which record now holds the
        session, so the next save compares against it. `lifetime`, in seconds from now,
        replaces the idle timeout for this save (Django's `set_expiry()`); zero or less
        stores the record already expired. Returns an `ErrorResponse` as `commit` does.
        """
        try:
            return (yield from self._commit(session, lifetime))
        except (StoreUnavailableError, ConflictError) as exc:
            self._log_unavailable("save", session._sg.id, exc)
            return self.policy.unavailable_response(exc)
        except SessionTooLargeError as exc:
            logger.warning(
                "session %s not saved: %s",
                key_hash(session._sg.id),
                exc,
                extra={"event": EventKind.TOO_LARGE, "session": key_hash(session._sg.id)},
            )
            self._emit(EventKind.TOO_LARGE, session._sg.id)
            return self.policy.too_large_response()
        except _Rotated:
            loaded = session._sg.loaded
            logger.info(
                "save refused: session %s was regenerated while this request ran",
                key_hash(loaded.key) if loaded else "-",
                extra={"event": EventKind.ROTATED},
            )
            self._emit(EventKind.ROTATED, loaded.key if loaded else None)
            return self.policy.rotated_response()

    def response_cookies(
        self, ours: tuple[str, ...], app_set_cookies: Sequence[str]
    ) -> tuple[str, ...]:
        """The Set-Cookie values to add to a response whose app already sets
        `app_set_cookies`: ours, except that a cookie of the session's name set by the app
        itself is the app's to keep (two owners of one name is a misconfiguration)."""
        name = self.cookie.name
        if not any(value.partition("=")[0].strip() == name for value in app_set_cookies):
            return ours
        logger.error(
            "the application set a cookie named %r, the name of the session cookie: its "
            "cookie is kept and the session's is not sent. Give one of them another name "
            "(the middleware's session_cookie=...)",
            name,
            extra={"event": "cookie_clash"},
        )
        return tuple(value for value in ours if value.partition("=")[0] != name)

    def _emit(self, kind: EventKind, key: str | None = None, reason: str | None = None) -> None:
        if self.events:
            self.events.emit(Event(kind, key_hash(key) if key else None, reason))

    def _log_unavailable(
        self, action: str, key: str | None, exc: StoreUnavailableError | ConflictError
    ) -> None:
        kind = EventKind.CONFLICT if isinstance(exc, ConflictError) else EventKind.STORE_ERROR
        session = key_hash(key) if key else None
        logger.error(
            "session %s failed (%s): %s",
            action,
            session or "-",
            exc,
            extra={"event": kind, "session": session, "reason": str(exc)},
        )
        self._emit(kind, key, str(exc))

    def _commit(self, session: Session, lifetime: float | None) -> Flow[Saved]:
        loaded = session._sg.loaded
        if session._sg.invalidated and loaded is not None:
            self._emit(EventKind.INVALIDATE, loaded.key)
            yield Delete(loaded.key)  # unconditional: logout wins over any concurrent save
        if session._sg.regenerated and loaded is not None:
            self._emit(EventKind.REGENERATE, loaded.key)
            return (yield from self._regenerate(session, loaded, lifetime))
        if loaded is None or session._sg.invalidated:
            return (yield from self._create(session, lifetime))
        if session.modified:
            return (yield from self._update(session, loaded, lifetime))
        return (yield from self._refresh(loaded, lifetime))

    def decode_record(self, record: Record) -> Envelope:
        """The envelope a stored record holds, checked with this core's keys."""
        return decode_record(record, keys=self.record_keys, accept_unsigned=self.accept_unsigned)

    def deadline(self, created_at: float, lifetime: float | None) -> float:
        """The deadline of a record written now: `lifetime` (else the idle timeout) from
        now, but never past the absolute timeout."""
        deadline = self.clock() + (self.idle_timeout if lifetime is None else lifetime)
        if self.absolute_timeout is None:
            return deadline
        return min(deadline, created_at + self.absolute_timeout)

    def payload(
        self, data: dict[str, Any], created_at: float, moved_to: str | None = None
    ) -> bytes:
        """The stored bytes of `data`; `SessionTooLargeError` over `max_size`."""
        payload = encode(
            Envelope(data, created_at, moved_to), self.serializer, key=self.record_keys[0]
        )
        if len(payload) > self.max_size:
            # Checked on what is stored, merges included: every later request would read
            # it, and an anonymous client could otherwise fill the store with one request.
            raise SessionTooLargeError(
                f"the session's encoded size is {len(payload):,} bytes, over max_size="
                f"{self.max_size:,}; the stored session was left as it was. Keep large data "
                "out of the session, or raise max_size."
            )
        return payload

    def _create(self, session: Session, lifetime: float | None) -> Flow[Saved]:
        if not session and not self.keep_empty:
            stale = session._sg.stale_cookie or session._sg.invalidated
            return Saved(self.cookie.clear_header() if stale else None)
        now = self.clock()
        payload = self.payload(dict(session), now)
        expires_at = self.deadline(now, lifetime)
        version = yield Save(session._sg.id, payload, expires_at, ABSENT)
        if version is None:  # pragma: no cover - a 160-bit random id that already exists
            raise ConflictError("a freshly generated session id already exists in the store")
        stored = Loaded(session._sg.id, version, now, expires_at)
        return Saved(self.cookie.set_header(self.signer.sign(session._sg.id)), stored)

    def _refresh(self, loaded: Loaded, lifetime: float | None) -> Flow[Saved]:
        """Slide the idle deadline of a session this request only read."""
        expires_at = self.deadline(loaded.created_at, lifetime)
        # Skip the write unless it moves the deadline noticeably (at most once a minute).
        if not self.save_every_request and expires_at - loaded.expires_at < min(
            60, self.idle_timeout / 100
        ):
            return Saved(None, loaded)
        # Only the record this request read: if the id was regenerated meanwhile, it now
        # holds a forward pointer whose short lifetime must not be extended, and the
        # browser already has the new cookie, which this response must not replace.
        touched = yield Touch(loaded.key, expires_at, loaded.version)
        if not touched:
            # Gone, or no longer the record this request read: whatever holds the id now
            # is another request's doing, and nothing of it is known here.
            return Saved(None)
        stored = Loaded(loaded.key, loaded.version, loaded.created_at, expires_at)
        return Saved(self.cookie.set_header(self.signer.sign(loaded.key)), stored)

    def _update(self, session: Session, loaded: Loaded, lifetime: float | None) -> Flow[Saved]:
        """Save this request's changes without losing a concurrent request's.

        One atomic `update` of the record: if it is still the version this request loaded
        (the common case), the store writes this request's data as it is; if another
        request saved in between, `_Merge` applies exactly this request's set and deleted
        keys to the newest record instead. A regenerate pointer met on the way is followed.
        """
        if not self.merge:
            return (yield from self._overwrite(session, loaded, lifetime))
        key = loaded.key
        # What to write if the record is still the one this request loaded: encoded here,
        # outside the store's lock.
        data = dict(session)
        unchanged = Write(
            self.payload(data, loaded.created_at) if data or self.keep_empty else None,
            self.deadline(loaded.created_at, lifetime),
        )
        for _ in range(self.max_attempts):  # bounds the pointers followed
            # Versions are only comparable within one key: after following a pointer, the
            # new id's version may equal the old one's by chance (per-key counters).
            expected = (loaded.version, unchanged) if key == loaded.key else None
            merge = Merge(self, session, loaded.created_at, lifetime, expected)
            updated: Updated[Merged] = yield Update(key, merge)
            version, merged = updated.version, updated.found
            if merged.data is not None:
                self._emit(EventKind.MERGE, key)
            if merged.rotated:
                raise _Rotated
            if version is not None:
                if merged.emptied:
                    return Saved(self.cookie.clear_header() if key == loaded.key else None)
                stored = Loaded(key, version, merged.created_at, merged.expires_at)
                if key != loaded.key:
                    # Merged into the regenerated session; its cookie is already out, and
                    # must never be sent to a request that came with the old id.
                    return Saved(None, stored, merged.data, forwarded=True)
                cookie = self.cookie.set_header(self.signer.sign(key))
                return Saved(cookie, stored, merged.data)
            if merged.moved_to is None:
                # Deleted meanwhile (logout, expiry): never bring it back.
                return Saved(self.cookie.clear_header() if key == loaded.key else None)
            key = merged.moved_to
        raise ConflictError(
            f"gave up saving session {key_hash(loaded.key)}: it was regenerated "
            f"{self.max_attempts} times while this request ran"
        )

    def _overwrite(self, session: Session, loaded: Loaded, lifetime: float | None) -> Flow[Saved]:
        """`merge=False`: the last writer wins, as in most session libraries (a baseline)."""
        if not session and not self.keep_empty:
            yield Delete(loaded.key)
            return Saved(self.cookie.clear_header())
        payload = self.payload(dict(session), loaded.created_at)
        expires_at = self.deadline(loaded.created_at, lifetime)
        version = yield Save(loaded.key, payload, expires_at, None)
        stored = Loaded(loaded.key, version, loaded.created_at, expires_at)
        return Saved(self.cookie.set_header(self.signer.sign(loaded.key)), stored)

    def _regenerate(self, session: Session, loaded: Loaded, lifetime: float | None) -> Flow[Saved]:
        """Store the data under the new id, then turn the old id into a forward pointer.

        Both steps are atomic store updates, so a regenerate never has to retry against
        concurrent writers: the pointer replaces whatever the old id holds by then, and a
        save that landed on the old id before it is carried over to the new id.

        The new id inherits the creation time: rotating ids must not extend the absolute
        lifetime (apps that rotate every few minutes would otherwise never expire).
        """
        new_key, created_at = session._sg.id, loaded.created_at
        first = dict(session)
        payload = self.payload(first, created_at)
        expires_at = self.deadline(created_at, lifetime)
        new_version = yield Save(new_key, payload, expires_at, ABSENT)
        if new_version is None:  # pragma: no cover - see _create
            raise ConflictError("a freshly generated session id already exists in the store")
        now = self.clock()
        carry = session._sg.carry_in_flight
        pointer = self.payload(CARRY_MARK if carry else {}, now, moved_to=new_key)
        # The pointer's deadline is fixed here: nothing refreshes a pointer (see _refresh).
        moved: Updated[Moved] = yield Update(
            loaded.key, Move(self, pointer, now + self.regenerate_grace)
        )
        old = moved.found
        if old.gone:
            # Logged out concurrently: logout wins, the new copy goes too.
            yield Delete(new_key)
            return Saved(self.cookie.clear_header())
        cookie = self.cookie.set_header(self.signer.sign(new_key))
        stored = Loaded(new_key, new_version, created_at, expires_at)
        if carry and old.data is not None and old.version != loaded.version:
            # A concurrent save landed on the old id first: carry it over, our changes on top.
            carry_over = Carry(self, session, old.data, first, created_at, lifetime)
            carried: Updated[Carried | None] = yield Update(new_key, carry_over)
            if carried.version is None or carried.found is None:
                return Saved(cookie)  # the new session was deleted meanwhile
            stored = Loaded(new_key, carried.version, created_at, carried.found.expires_at)
            return Saved(cookie, stored, carried.found.data)
        # (If another request regenerated concurrently, both new sessions stay valid.)
        return Saved(cookie, stored)


class _Rotated(Exception):
    """A save met a forward pointer that does not carry in-flight writes: refuse it."""
