"""The store operations the core's flows yield, for `sessionguard.driver` to carry out.

Plain values: a flow yields one, the driver performs it against a sync or an async store
and sends the result back into the flow.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from .legacy import LegacySource
from .stores.base import Record, Updater, key_hash

__all__ = [
    "Delete",
    "Flow",
    "Load",
    "LoadLegacy",
    "Op",
    "Quarantine",
    "Save",
    "Touch",
    "Update",
    "key_hash",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Load:
    key: str


@dataclass(frozen=True, slots=True)
class Save:
    key: str
    payload: bytes
    expires_at: float
    expected_version: int | None


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """Atomically replace the record with what `updater` makes of the newest one."""

    key: str
    updater: Updater


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


Op = Load | Save | Delete | Touch | Update | Quarantine | LoadLegacy
Flow = Generator[Op, Any, _T]
