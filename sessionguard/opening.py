"""The core's opening flow: from the request's cookie to its session.

The first cookie value that verifies names the record; the record is loaded, checked
(a corrupt one goes to the `CorruptionPolicy`), and a forward pointer or a session past
its absolute lifetime gives a fresh session instead. A cookie that does not verify is
never looked up, and never cleared.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cookie import read_cookies
from .corebase import logger, security_logger
from .errors import CorruptSessionError, StoreUnavailableError
from .events import EventKind
from .lifetimes import Lifetimes
from .ops import Delete, Flow, Load, Quarantine, Save, key_hash
from .ownership import Ownership
from .policy import CorruptionEvent, ErrorResponse
from .session import EXPIRY_KEY, Loaded, Session
from .stores.base import ABSENT, Record

__all__ = ["Opening"]


class Opening(Lifetimes, Ownership):
    """`open`: the cookie to the request's session."""

    def open(
        self, cookie_header: str | None, *, read_only: bool = False
    ) -> Flow[Session | ErrorResponse]:
        """Flow: read the cookie, load and check the record, and return the request's session.

        Returns an `ErrorResponse` when the policy rejects a corrupt record or the store is
        unavailable; the app must then not be called.
        """
        values = read_cookies(cookie_header, self.cookie.name)
        try:
            return (yield from self._open_values(values, cookie_header, read_only))
        except StoreUnavailableError as exc:
            return self._unavailable(exc)

    def open_values(
        self, values: Sequence[str], *, read_only: bool = False
    ) -> Flow[Session | ErrorResponse]:
        """`open` for an integration that has the cookie's values rather than the header
        (Django's `SessionStore(session_key)`)."""
        try:
            return (yield from self._open_values(list(values), None, read_only))
        except StoreUnavailableError as exc:
            return self._unavailable(exc)

    def _unavailable(self, exc: StoreUnavailableError) -> ErrorResponse:
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
        stored = self.stored_key(key)
        record: Record | None = yield Load(stored)
        if record is None and stored != key:
            record = yield from self._rehashed(key, stored)
        if record is None:
            self._emit(EventKind.EXPIRED, key, "missing")  # idle-expired, purged or logged out
            return self._fresh(read_only, stale_cookie=True)
        try:
            envelope = self.decode_record(record)
        except CorruptSessionError as exc:
            return (yield from self._corrupt(key, stored, record, exc, read_only))
        if envelope.moved_to is not None:
            # The id was regenerated. Following the pointer here would hand the new id to
            # whoever holds the old one (session fixation), so this request starts fresh.
            return self.session_class(read_only=read_only)
        data = envelope.data
        absolute = (
            self.absolute_timeout if EXPIRY_KEY not in data else self.expiry_of(data).absolute
        )
        if absolute is not None and envelope.created_at + absolute <= self.clock():
            self._emit(EventKind.EXPIRED, key, "absolute")
            yield Delete(stored, expected_version=record.version)
            return self._fresh(read_only, stale_cookie=True)
        loaded = Loaded(key, record.version, envelope.created_at, record.expires_at)
        return self.session_class(envelope.data, loaded=loaded, read_only=read_only)

    def _rehashed(self, key: str, stored: str) -> Flow[Record | None]:
        """The record of a session stored under its plain id before `hashed_ids` was
        turned on, moved under its hashed key: turning it on logs no one out.

        The copy is made only where nothing is stored yet, and the plain record is then
        deleted only if it is still the version copied. A record that does not verify,
        or is a forward pointer, is left where it is for `purge` (and its session starts
        anew).
        """
        plain: Record | None = yield Load(key)
        if plain is None:
            return None
        try:
            envelope = self.decode_record(plain)
        except CorruptSessionError:
            return None
        if envelope.moved_to is not None:
            return None
        owner = self.owner_of(envelope.data)
        version = yield Save(stored, plain.payload, plain.expires_at, ABSENT, owner)
        if version is None:  # moved by a concurrent request first: read its copy
            moved: Record | None = yield Load(stored)
            return moved
        yield Delete(key, expected_version=plain.version)
        return Record(plain.payload, version, plain.expires_at)

    def _fresh(self, read_only: bool, *, stale_cookie: bool) -> Session:
        session = self.session_class(read_only=read_only)
        session._sg.stale_cookie = stale_cookie
        return session

    def _corrupt(
        self, key: str, stored: str, record: Record, exc: CorruptSessionError, read_only: bool
    ) -> Flow[Session | ErrorResponse]:
        event = CorruptionEvent(exc.reason, key_hash(stored), exc.detail)
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
            yield Quarantine(self.policy.quarantine_dir, name, record, stored)
        elif action == "reset":
            # Only this exact record: a concurrent request may already have replaced it.
            yield Delete(stored, expected_version=record.version)
        if action == "reject":
            return self.policy.reject_response(self.cookie.clear_header())
        return self._fresh(read_only, stale_cookie=True)
