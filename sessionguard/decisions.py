"""The `update` decisions of the core's flows, each a pure function of the newest record.

A store's atomic `update` shows a decision the record as it is now (or `None`); the
decision says what to write in its place and what it found there, and the flow acts on
that finding (see `sessionguard.ops.Update`). Four of them:

* `Merge`, a save: this request's set and deleted keys on top of the newest data; a
  forward pointer met on the way is followed (`moved_to`) or refuses the save (`rotated`).
* `Claim`, an adoption of an old backend's session: exactly once per old id.
* `Move` and `Carry`, the two steps of a regenerate that must see the old and the new
  record (the protocol is in `sessionguard.regenerating`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .codec import Envelope
from .errors import CorruptSessionError
from .session import Session, apply_changes
from .stores.base import Owner, Record, Write

__all__ = ["CARRY_MARK", "Carried", "Carry", "Claim", "Merge", "Merged", "Move", "Moved", "Records"]

logger = logging.getLogger("sessionguard")


class Records(Protocol):
    """What a decision needs from the core: how records are read and written."""

    #: Store a session that was emptied instead of deleting it (Django's engine).
    keep_empty: bool

    def decode_record(self, record: Record) -> Envelope: ...

    def payload(
        self, data: dict[str, Any], created_at: float, moved_to: str | None = None
    ) -> bytes: ...

    def deadline(
        self, created_at: float, lifetime: float | None, data: Mapping[str, Any] | None = None
    ) -> float: ...

    def owner_of(self, data: Mapping[str, Any]) -> Owner: ...


#: The data of a forward pointer that lets in-flight requests merge into the new session
#: (`regenerate(carry_in_flight=True)`); a pointer carries no session data otherwise.
CARRY_MARK = {"carry_in_flight": True}


@dataclass(frozen=True, slots=True)
class Merged:
    """What a save's `Merge` found in the newest record, and what it wrote."""

    #: The merged data written (`None`: the session's own data was, unmerged).
    data: dict[str, Any] | None = None
    created_at: float = 0.0
    expires_at: float = 0.0
    #: The record is a forward pointer that carries in-flight writes to this id.
    moved_to: str | None = None
    #: The record is a forward pointer that refuses in-flight writes.
    rotated: bool = False
    #: The merge left nothing, so the record was deleted.
    emptied: bool = False


@dataclass(frozen=True)
class Merge:
    """The `update` decision of a save: the newest record with this request's changes.

    If the record still has the version `loaded` (the one this request read), there is
    nothing to merge: the session's data is stored as it is. That encoding is done here,
    only when it is the one written: saved ahead of the lock, it was wasted work whenever
    concurrent saves made a merge necessary, which is exactly when the lock is busy. A
    pure function of the record.
    """

    core: Records
    session: Session
    created_at: float  # stands in for that of an unreadable record (and of an unchanged one)
    lifetime: float | None
    loaded: int | None

    def __call__(self, record: Record | None) -> tuple[Write | None, Merged]:
        if record is None:
            return None, Merged()
        if record.version == self.loaded:
            data = dict(self.session)
            expires_at = self.core.deadline(self.created_at, self.lifetime, data)
            if not data and not self.core.keep_empty:
                return Write(None), Merged(None, self.created_at, expires_at, emptied=True)
            payload = self.core.payload(data, self.created_at)
            write = Write(payload, expires_at, self.core.owner_of(data))
            return write, Merged(None, self.created_at, expires_at)
        try:
            envelope = self.core.decode_record(record)
        except CorruptSessionError as exc:
            # The newest copy is unreadable; this request's changes start it over.
            logger.warning("replacing corrupt session record during merge: %s", exc.reason)
            envelope = Envelope({}, self.created_at)
        if envelope.moved_to is not None:
            if envelope.data == CARRY_MARK:
                return None, Merged(moved_to=envelope.moved_to)
            return None, Merged(rotated=True)
        data = apply_changes(self.session, envelope.data)
        if not data and not self.core.keep_empty:
            # An emptied session is deleted, as a new empty one is never stored.
            return Write(None), Merged(data, emptied=True)
        created_at = envelope.created_at
        expires_at = self.core.deadline(created_at, self.lifetime, data)
        write = Write(self.core.payload(data, created_at), expires_at, self.core.owner_of(data))
        return write, Merged(data, created_at, expires_at)


@dataclass(frozen=True)
class Claim:
    """The `update` decision of an adoption: replace exactly the record that was read (or
    the absence of one) with the adoption marker; anything else means another request
    got there first. Finds whether the claim was won."""

    version: int | None
    marker: Write

    def __call__(self, record: Record | None) -> tuple[Write | None, bool]:
        won = (record.version if record is not None else None) == self.version
        return (self.marker if won else None), won


@dataclass(frozen=True, slots=True)
class Moved:
    """What the old id held when a regenerate turned it into a pointer."""

    gone: bool = False  # nothing: logged out meanwhile, so no pointer was written
    data: dict[str, Any] | None = None  # its data (None: another pointer, left alone)
    version: int | None = None


@dataclass(frozen=True)
class Move:
    """The `update` decision that turns the old id into a forward pointer."""

    core: Records
    pointer: bytes
    expires_at: float

    def __call__(self, record: Record | None) -> tuple[Write | None, Moved]:
        if record is None:
            return None, Moved(gone=True)
        try:
            envelope: Envelope | None = self.core.decode_record(record)
        except CorruptSessionError:
            envelope = None  # unreadable: nothing to carry over
        if envelope is not None and envelope.moved_to is not None:
            return None, Moved()  # regenerated concurrently: both new sessions stay valid
        data = envelope.data if envelope is not None else {}
        # A pointer belongs to no one: the session, and its place in the index, moved.
        write = Write(self.pointer, self.expires_at, self.core.owner_of({}))
        return write, Moved(False, data, record.version)


@dataclass(frozen=True, slots=True)
class Carried:
    """What `Carry` wrote into the new id."""

    data: dict[str, Any]
    expires_at: float


@dataclass(frozen=True)
class Carry:
    """The `update` decision that brings a concurrent save on the old id into the new one.

    The new record is the old id's last data with this request's changes on top, plus
    whatever requests that followed the pointer changed in the new record meanwhile.
    """

    core: Records
    session: Session
    newest_old: dict[str, Any]
    first: dict[str, Any]  # what the regenerate wrote to the new id
    created_at: float
    lifetime: float | None

    def __call__(self, record: Record | None) -> tuple[Write | None, Carried | None]:
        if record is None:
            return None, None  # the new session was deleted meanwhile: leave it so
        data = apply_changes(self.session, self.newest_old)
        try:
            current = self.core.decode_record(record).data
        except CorruptSessionError:
            current = self.first
        for key, value in current.items():
            if key not in self.first or self.first[key] != value:
                data[key] = value  # changed by a request that followed the pointer
        for key in self.first.keys() - current.keys():
            data.pop(key, None)  # deleted by one
        expires_at = self.core.deadline(self.created_at, self.lifetime, data)
        payload = self.core.payload(data, self.created_at)
        write = Write(payload, expires_at, self.core.owner_of(data))
        return write, Carried(data, expires_at)
