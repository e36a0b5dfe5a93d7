"""The store operations the core's flows yield, for `sessionguard.driver` to carry out.

Plain values: a flow yields one, the driver performs it against a sync or an async store
and sends the result back into the flow.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .legacy import LegacySource
from .stores.base import KEEP, Owner, Record, Write, key_hash

__all__ = [
    "Delete",
    "Flow",
    "Load",
    "LoadLegacy",
    "Op",
    "Quarantine",
    "Save",
    "SessionsOf",
    "Touch",
    "Update",
    "Updated",
    "key_hash",
]

_T = TypeVar("_T")
_O = TypeVar("_O")

#: A pure function of the newest record (or `None`): what to store in its place (or
#: `None` to store nothing), and what it found, for the flow to act on.
Decide = Callable[[Record | None], tuple[Write | None, _O]]


@dataclass(frozen=True, slots=True)
class Load:
    key: str


@dataclass(frozen=True, slots=True)
class Save:
    key: str
    payload: bytes
    expires_at: float
    expected_version: int | None
    owner: Owner = KEEP


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Update(Generic[_O]):
    """Atomically replace the record with what `decide` makes of the newest one.

    The flow gets back an `Updated`: the new version, and what `decide` found in the
    record it was last shown (a store may show it more than once, retrying).
    """

    key: str
    decide: Decide[_O]


@dataclass(frozen=True, slots=True)
class Updated(Generic[_O]):
    """What an `Update` did: `version` as `Store.update` returns it, and `found`."""

    version: int | None
    found: _O


@dataclass(frozen=True, slots=True)
class Touch:
    key: str
    expires_at: float
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class LoadLegacy:
    """Read a session of the backend being replaced (read-only); returns its data or `None`."""

    source: LegacySource
    legacy_id: str


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Copy a corrupt record into `directory`, then delete it if it is still that record."""

    directory: str
    file_name: str
    record: Record
    key: str


@dataclass(frozen=True, slots=True)
class SessionsOf:
    """The keys of the records the store indexes under `user`."""

    user: str


Op = Load | Save | Delete | Touch | Update[Any] | Quarantine | LoadLegacy | SessionsOf
Flow = Generator[Op, Any, _T]
