"""What every flow of the core shares: its configuration, how it turns session data into
records and back, and how it reports what happened (logs, events).

`CoreBase` is the base of `SessionCore`; the flows themselves live in `opening` (cookie
to session) and `committing` (session to store and Set-Cookie).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .codec import Cipher, Envelope, KeyedCodec, Serializer, record_keys
from .cookie import DEFAULT_MAX_AGE, CookieSettings, SecretKey, Signer
from .errors import ConfigurationError, ConflictError, SessionTooLargeError, StoreUnavailableError
from .events import Event, EventBus, EventKind, Hook
from .hashedids import HashedIds
from .ops import key_hash
from .policy import CorruptionPolicy
from .record import decode_record
from .session import Loaded, Session
from .stores.base import Record

__all__ = ["Saved", "CoreBase", "UnsignedRecords", "logger", "security_logger"]

#: What to do with a record that carries no signature (written by sessionguard 0.1): read
#: it (and sign it at its next write), or treat it as corrupt.
UnsignedRecords = Literal["accept", "reject"]

logger = logging.getLogger("sessionguard")
security_logger = logging.getLogger("sessionguard.security")


@dataclass(frozen=True, slots=True)
class Saved:
    """Where a save left the session (see `Committing.save`)."""

    #: The Set-Cookie header value to send, if any.
    cookie: str | None
    #: The record that now holds the session: `None` when none does (deleted meanwhile,
    #: emptied, or never stored), or when this request cannot know (see `_refresh`).
    stored: Loaded | None = None
    #: What that record holds, when a merge made it differ from the session's own data.
    data: dict[str, Any] | None = None
    #: Merged into the session's regenerated id, whose cookie this request must not send.
    forwarded: bool = False


class CoreBase:
    """Session behaviour's configuration, set once per middleware."""

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
        user_key: str | None = None,
        cipher: Cipher | None = None,
        record_devices: bool = False,
        hashed_ids: HashedIds | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_options(
            unsigned_records, idle_timeout, absolute_timeout, serializer, max_attempts, max_size
        )
        self.signer = Signer(secret_key)
        # Records are signed with the newest secret and verified against all of them.
        self.record_keys = record_keys(self.signer.secrets)
        self.accept_unsigned = unsigned_records == "accept"
        self.cookie = cookie
        self.policy = policy
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
        self.max_size = max_size
        self.save_every_request = save_every_request
        self.serializer: Serializer = serializer
        # With a cipher, every payload is encrypted at rest (`sessionguard.cipher`).
        self.cipher = cipher
        self._codec = KeyedCodec(
            self.record_keys,
            serializer=serializer,
            accept_unsigned=self.accept_unsigned,
            cipher=cipher,
        )
        self.merge = merge
        self.max_attempts = max_attempts
        self.regenerate_grace = regenerate_grace
        self.events = EventBus(hooks)
        self.clock = clock
        # The session key whose value names the user a session belongs to, for the
        # store's per-user index (`sessionguard.users`); None keeps no index.
        self.user_key = user_key
        # Note the device (user agent, client network) of each session at its creation and
        # at each login (`sessionguard.devices`): costs no write of its own.
        self.record_devices = record_devices
        # Records stored under keyed hashes of their ids (`sessionguard.hashedids`).
        self.hashed_ids = hashed_ids
        # What `open` hands the app: a `Session`, or a subclass an integration needs (the
        # Flask interface's adds Flask's `SessionMixin`).
        self.session_class: type[Session] = Session

    # -- records --------------------------------------------------------------------------

    def decode_record(self, record: Record) -> Envelope:
        """The envelope a stored record holds, checked with this core's keys."""
        return decode_record(record, decoder=self._codec.decode)

    def payload(
        self, data: dict[str, Any], created_at: float, moved_to: str | None = None
    ) -> bytes:
        """The stored bytes of `data`; `SessionTooLargeError` over `max_size`."""
        payload = self._codec.encode(Envelope(data, created_at, moved_to))
        if len(payload) > self.max_size:
            # Checked on what is stored, merges included: every later request would read
            # it, and an anonymous client could otherwise fill the store with one request.
            raise SessionTooLargeError(
                f"the session's encoded size is {len(payload):,} bytes, over max_size="
                f"{self.max_size:,}; the stored session was left as it was. Keep large data "
                "out of the session, or raise max_size."
            )
        return payload

    def stored_key(self, key: str) -> str:
        """The store key of the session id `key`: the id itself, or its keyed hash with
        `hashed_ids`. Every store operation names a session by this; cookies by the id."""
        ids = self.hashed_ids
        return key if ids is None else ids.of_session(key)

    def indexed_user(self, user: str) -> str:
        """The name the store's per-user index knows `user` by (see `stored_key`)."""
        ids = self.hashed_ids
        return user if ids is None else ids.of_user(user)

    # -- reporting ------------------------------------------------------------------------

    def name_of(self, key: str) -> str:
        """The short hash that names session id `key` in logs, events and
        `UserSession.session`: of its store key, the one name every tool can know."""
        return key_hash(self.stored_key(key))

    def _emit(self, kind: EventKind, key: str | None = None, reason: str | None = None) -> None:
        if self.events:
            self.events.emit(Event(kind, self.name_of(key) if key else None, reason))

    def _emit_stored(self, kind: EventKind, stored_key: str) -> None:
        """`_emit` for a session known only by its store key (listed by the per-user
        index, or reached through a forward pointer)."""
        if self.events:
            self.events.emit(Event(kind, key_hash(stored_key)))

    def _log_unavailable(
        self, action: str, key: str | None, exc: StoreUnavailableError | ConflictError
    ) -> None:
        kind = EventKind.CONFLICT if isinstance(exc, ConflictError) else EventKind.STORE_ERROR
        session = self.name_of(key) if key else None
        logger.error(
            "session %s failed (%s): %s",
            action,
            session or "-",
            exc,
            extra={"event": kind, "session": session, "reason": str(exc)},
        )
        self._emit(kind, key, str(exc))


def _check_options(
    unsigned_records: str,
    idle_timeout: int | None,
    absolute_timeout: int | None,
    serializer: str,
    max_attempts: int,
    max_size: int,
) -> None:
    """`ConfigurationError` for an option no middleware can run with, at start-up."""
    if unsigned_records not in ("accept", "reject"):
        raise ConfigurationError(
            f"unsigned_records must be 'accept' or 'reject', got {unsigned_records!r}"
        )
    if (idle_timeout is not None and idle_timeout <= 0) or (
        absolute_timeout is not None and absolute_timeout <= 0
    ):
        raise ConfigurationError("idle_timeout and absolute_timeout must be positive seconds")
    if serializer not in ("msgpack", "json"):
        raise ConfigurationError(f"serializer must be 'msgpack' or 'json', got {serializer!r}")
    if max_attempts < 1:
        raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts!r}")
    if max_size < 1:
        raise ConfigurationError(f"max_size must be a positive byte count, got {max_size!r}")
