"""Quixote's session3 on a sessionguard store: `SessionGuardStore`, a `session3` store.

```python
from session3.SessionManager import SessionManager
from sessionguard import FileStore
from sessionguard.quixote import SessionGuardStore

store = SessionGuardStore(FileStore("sessions"), secret_key=SECRET, session_class=MySession)
manager = SessionManager(store, MySession)
```

Where session3's `DirectorySessionStore` truncates the file before it locks it (a reader
then gets zero bytes and sleeps in a retry loop, forever if the writer died), pickles
whole objects and keeps only the last writer's object, this store keeps the state of a
session object (its instance attributes and, for a `DictSession`, its items) in
sessionguard's signed envelope, with the typed values of `sessionguard.values`:

* A save merges: it compares the object with the state this store loaded into it and
  applies exactly the attributes and items that request set, changed or deleted to the
  newest record, inside the store's atomic `update`. Concurrent requests that change
  different attributes both keep their change.
* A record that does not decode (damaged, forged, a `DirectorySessionStore` pickle) goes
  to the `CorruptionPolicy`; an outage raises `StoreUnavailableError`. No loop, no sleep.
* Loading rebuilds `session_class` without calling its `__init__` (session3's asks Quixote
  for the current request), by setting the instance `__dict__`.

Only this module imports session3; nothing in sessionguard imports this module.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from session3.Session import Session
from session3.store.SessionStore import SessionStore

from .codec import Cipher, Envelope, KeyedCodec, record_keys
from .cookie import SecretKey, Signer
from .errors import ConfigurationError, CorruptReason, CorruptSessionError, StoreUnavailableError
from .objectstate import (
    ATTRIBUTES,
    Field,
    Fields,
    as_data,
    fields_in,
    fields_of,
    pack,
    restore,
    unpack,
)
from .policy import CorruptionEvent, CorruptionPolicy
from .quarantine import copy_aside
from .record import decode_record
from .stores.base import Record, ScannableStore, SyncStore, Write, key_hash, validate_key

__all__ = ["DEFAULT_MAX_AGE", "SessionGuardStore"]

logger = logging.getLogger("sessionguard")

#: How long a record lives after its last save, unless `max_age` says otherwise.
DEFAULT_MAX_AGE = 14 * 24 * 60 * 60

# Attributes of session3's `Session` whose concurrent changes combine instead of the last
# writer's value winning: the newest access time, and the queue of form tokens (two tabs
# that each render a form must both find their token when the form comes back).
_ACCESS_TIME: Field = (ATTRIBUTES, "_access_time")
_FORM_TOKENS: Field = (ATTRIBUTES, "_form_tokens")


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What this store last read into (or wrote from) a session object."""

    #: Each attribute and item as it was then, packed: what a save compares with.
    base: dict[Field, bytes]


class SessionGuardStore(SessionStore):
    """A `session3` session store on any sessionguard `SyncStore`, safe across threads and
    processes.

    `secret_key` signs the records (a string, bytes or a list for rotation, newest first:
    the middleware's `secret_key`). `session_class` is the class `load_session` rebuilds
    (the one given to `SessionManager`). `policy` decides what a corrupt record becomes
    (default: reset, the request gets a new session). Each save keeps the record for
    `max_age` seconds. `cipher` encrypts records at rest (`sessionguard.cipher`).
    """

    is_multiprocess_safe = True
    is_thread_safe = True

    def __init__(
        self,
        store: SyncStore,
        *,
        secret_key: SecretKey,
        session_class: type[Any] = Session,
        policy: CorruptionPolicy | None = None,
        max_age: int = DEFAULT_MAX_AGE,
        cipher: Cipher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_age <= 0:
            raise ConfigurationError(f"max_age must be a positive number of seconds: {max_age!r}")
        self.store = store
        self.session_class = session_class
        self.policy = policy or CorruptionPolicy()
        self.max_age = max_age
        self.clock = clock
        # Every record is signed: unsigned ones (write access to the store alone) are refused.
        keys = record_keys(Signer(secret_key).secrets)
        self._codec = KeyedCodec(keys, accept_unsigned=False, cipher=cipher)
        # Per session object, by id(): session objects need not be hashable (a
        # `DictSession` is not), and a private attribute would end up in the user's state.
        self._loaded: dict[int, _Loaded] = {}

    def __repr__(self) -> str:
        return f"SessionGuardStore({self.store!r}, session_class={self.session_class.__name__})"

    # -- what SessionManager calls ------------------------------------------------------------

    def load_session(self, id: str, default: Any = None) -> Any:
        """The stored session `id` as a new `session_class` object, or `default`.

        A corrupt record goes to the policy: reset deletes it (or moves it to the
        quarantine directory) and returns `default`; reject raises `CorruptSessionError`.
        Raises `StoreUnavailableError` when the store cannot be read.
        """
        key = _key(id)
        if key is None:
            return default
        record = self.store.load(key)
        if record is None:
            return default
        try:
            fields = self._fields(record)
        except CorruptSessionError as exc:
            return self._corrupt(key, record, exc, default)
        return self._rebuild(key, fields)

    def save_session(self, session: Any) -> None:
        """Merge this request's changes to `session` into its newest record, atomically.

        Raises `TypeError` naming an attribute or item that cannot be stored (nothing is
        written then), `StoreUnavailableError` on an outage, `ConflictError` when a store
        without a lock keeps losing its compare-and-swap.
        """
        key = validate_key(session.id)
        current = fields_of(session)
        packed = {field: pack(field, value) for field, value in current.items()}
        created = current.get((ATTRIBUTES, "_creation_time"))
        now = self.clock()
        save = _Save(
            self,
            key,
            loaded=self._loaded.get(id(session)),
            current=current,
            packed=packed,
            created_at=float(created) if _is_number(created) else now,
            now=now,
            max_tokens=getattr(session, "MAX_FORM_TOKENS", 32),
        )
        self.store.update(key, save)
        self._remember(session, _Loaded(packed))

    def delete_session(self, session: Any) -> None:
        """Delete the record of `session`, whatever changed it meanwhile: logout wins."""
        self._loaded.pop(id(session), None)
        key = _key(session.id)
        if key is not None:
            self.store.delete(key)

    def has_session(self, id: str) -> bool:
        """Whether a live record is stored under `id` (readable or not)."""
        key = _key(id)
        return key is not None and self.store.load(key) is not None

    # -- for admin tools and cron jobs ------------------------------------------------------

    def iter_sessions(self) -> Iterator[tuple[str, Any]]:
        """`(id, session)` for every live, readable session in the store; records that are
        not this store's (another app's sessions, damage) are passed over."""
        for stored in self._scannable().scan():
            if stored.expired:
                continue
            try:
                fields = self._fields(stored.record)
            except CorruptSessionError:
                continue
            yield stored.key, self._rebuild(stored.key, fields)

    def delete_old_sessions(self, minutes: float) -> tuple[int, int]:
        """Delete the sessions not saved for `minutes` (and expired ones); return
        `(deleted, remaining)` as `DirectorySessionStore` does. A session saved while
        this runs stays. Records that are not this store's are left alone, uncounted
        (`sessionguard purge --corrupt` is the tool for damaged ones)."""
        cutoff = self.clock() - minutes * 60
        deleted = remaining = 0
        for stored in self._scannable().scan():
            try:
                _, saved_at = self._state(stored.record)
            except CorruptSessionError:
                continue
            old = stored.expired or saved_at < cutoff
            if old and self.store.delete(stored.key, expected_version=stored.record.version):
                deleted += 1
            else:
                remaining += 1
        return deleted, remaining

    # -- records ------------------------------------------------------------------------------

    def _state(self, record: Record) -> tuple[Fields, float]:
        envelope = decode_record(record, decoder=self._codec.decode)
        found = fields_in(envelope.data) if envelope.moved_to is None else None
        if found is None:
            raise CorruptSessionError(
                CorruptReason.UNDECODABLE,
                "the record holds no Quixote session (written by another integration?)",
            )
        return found

    def _fields(self, record: Record) -> Fields:
        return self._state(record)[0]

    def _payload(self, fields: Fields, created_at: float, now: float) -> Write:
        payload = self._codec.encode(Envelope(as_data(fields, now), created_at))
        return Write(payload, now + self.max_age)

    def _rebuild(self, key: str, fields: Fields) -> Any:
        session = restore(self.session_class, fields, id=key)
        # What the object holds: a class that is no mapping leaves the items out, and
        # must not delete them at its next save.
        held = fields_of(session)
        self._remember(session, _Loaded({f: pack(f, v) for f, v in held.items()}))
        return session

    def _remember(self, session: Any, loaded: _Loaded) -> None:
        slot = id(session)
        if slot not in self._loaded:
            # Forgotten when the object dies, before its id() can be reused.
            weakref.finalize(session, self._loaded.pop, slot, None)
        self._loaded[slot] = loaded

    def _corrupt(self, key: str, record: Record, exc: CorruptSessionError, default: Any) -> Any:
        event = CorruptionEvent(exc.reason, key_hash(key), exc.detail)
        logger.warning(
            "corrupt Quixote session record %s (%s): %s", event.key_hash, event.reason, exc.detail
        )
        action = self.policy.decide(event)
        quarantine = self.policy.quarantine_dir
        if quarantine is not None:
            name = f"{event.key_hash}-{event.reason}-{int(self.clock())}.bin"
            try:
                copy_aside(quarantine, name, record.payload)
            except OSError as error:
                raise StoreUnavailableError(f"could not quarantine {name}: {error}") from error
        if quarantine is not None or action == "reset":
            # Only this exact record: a concurrent request may already have replaced it.
            self.store.delete(key, expected_version=record.version)
        if action == "reject":
            raise exc
        return default

    def _scannable(self) -> ScannableStore:
        if not isinstance(self.store, ScannableStore):
            raise ConfigurationError(f"{self.store!r} cannot list its sessions")
        return self.store


class _Save:
    """The `update` decision of `save_session`: a pure function of the newest record."""

    def __init__(
        self,
        owner: SessionGuardStore,
        key: str,
        *,
        loaded: _Loaded | None,
        current: Fields,
        packed: dict[Field, bytes],
        created_at: float,
        now: float,
        max_tokens: int,
    ) -> None:
        self.owner = owner
        self.key = key
        self.loaded = loaded
        self.current = current
        self.packed = packed
        self.created_at = created_at
        self.now = now
        self.max_tokens = max_tokens

    def __call__(self, record: Record | None) -> Write | None:
        loaded = self.loaded
        if record is None:
            # Deleted since it was loaded (a logout, which wins): not brought back. A new
            # session (never loaded here) is created.
            return None if loaded is not None else self._write(self.current)
        # Always a merge, even when nobody saved in between: the record may hold what the
        # object does not (the items of a DictSession read by a plain session class).
        try:
            newest = self.owner._fields(record)
        except CorruptSessionError as exc:
            # The newest copy is unreadable; this request holds the whole session.
            logger.warning(
                "replacing corrupt Quixote session record %s during save (%s)",
                key_hash(self.key),
                exc.reason,
            )
            return self._write(self.current)
        return self._write(self._merge(newest, loaded.base if loaded is not None else {}))

    def _write(self, fields: Fields) -> Write:
        return self.owner._payload(fields, self.created_at, self.now)

    def _merge(self, newest: Fields, base: dict[Field, bytes]) -> Fields:
        """`newest` with the fields this request set, changed or deleted since `base`."""
        merged = dict(newest)
        for field, value in self.current.items():
            before = base.get(field)
            if before is None or (self.packed[field] != before and _changed(before, value)):
                merged[field] = self._combined(field, before, value, newest.get(field))
        for field in base.keys() - self.current.keys():
            merged.pop(field, None)
        return merged

    def _combined(self, field: Field, before: bytes | None, value: Any, newest: Any) -> Any:
        if field == _ACCESS_TIME and _is_number(value) and _is_number(newest):
            return max(value, newest)
        if field == _FORM_TOKENS and before is not None:
            old = unpack(before)
            if isinstance(value, list) and isinstance(old, list) and isinstance(newest, list):
                removed = [token for token in old if token not in value]
                added = [token for token in value if token not in old]
                kept = [token for token in newest if token not in removed]
                tokens = kept + [token for token in added if token not in kept]
                return tokens[-self.max_tokens :] if self.max_tokens > 0 else tokens
        return value


def _changed(before: bytes, value: Any) -> bool:
    # Different bytes can hold an equal value (a dict or set in another order).
    old = unpack(before)
    return not (type(old) is type(value) and old == value)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _key(session_id: object) -> str | None:
    """The store key of a session id, or `None` for an id no session can have (a bogus
    cookie): session3's ids are `secrets.token_urlsafe` strings."""
    try:
        return validate_key(session_id)  # type: ignore[arg-type]
    except ValueError:
        return None
