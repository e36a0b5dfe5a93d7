"""`MemoryStore`: a dict in this process, for tests and single-process development."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .base import (
    ABSENT,
    KEEP,
    BaseStore,
    Owner,
    PurgeProgress,
    Record,
    StoredRecord,
    Updater,
    validate_key,
)

__all__ = ["MemoryStore"]

_T = TypeVar("_T")


class MemoryStore(BaseStore):
    """Keeps records in a dict guarded by a lock; one object serves both sync and async callers.

    Data is lost when the process exits and is not shared between worker processes.
    `clock` exists so tests can move time forward without sleeping. Records' owners and
    the per-user index change under the same lock as the records.
    """

    indexes_users = True

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._records: dict[str, Record] = {}
        self._owners: dict[str, str] = {}
        self._by_user: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self._clock = clock

    async def _run(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        # No I/O, and the lock is held for microseconds: a worker thread would cost more.
        return func(*args, **kwargs)

    def _live(self, key: str, expected_version: int | None = None) -> Record | None:
        """The live record of `key`; with `expected_version`, only if it has that version."""
        record = self._records.get(key)
        if record is not None and record.expires_at <= self._clock():
            self._drop(key)
            return None
        if record is None or expected_version is None or record.version == expected_version:
            return record
        return None

    def load(self, key: str) -> Record | None:
        validate_key(key)
        with self._lock:
            return self._live(key)

    def save(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        validate_key(key)
        with self._lock:
            current = self._live(key)
            if expected_version is not None:
                if (current.version if current else ABSENT) != expected_version:
                    return None
            version = next(self._versions)
            self._records[key] = Record(bytes(payload), version, expires_at)
            self._own(key, owner)
            return version

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        validate_key(key)
        with self._lock:
            if self._live(key, expected_version) is None:
                return False
            self._drop(key)
            return True

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        validate_key(key)
        with self._lock:
            current = self._live(key, expected_version)
            if current is None:
                return False
            self._records[key] = Record(current.payload, current.version, expires_at)
            return True

    def update(self, key: str, updater: Updater) -> int | None:
        validate_key(key)
        with self._lock:
            write = updater(self._live(key))
            if write is None:
                return None
            if write.payload is None:
                self._drop(key)
                return ABSENT
            version = next(self._versions)
            self._records[key] = Record(bytes(write.payload), version, write.expires_at)
            self._own(key, write.owner)
            return version

    def purge_expired_batches(self, batch_size: int = 1000) -> Iterator[PurgeProgress]:
        with self._lock:
            candidates = [
                key for key, rec in self._records.items() if rec.expires_at <= self._clock()
            ]
        for start in range(0, len(candidates), batch_size):
            removed = []
            with self._lock:
                for key in candidates[start : start + batch_size]:
                    # Checked again under the lock: it may have been refreshed since.
                    record = self._records.get(key)
                    if record is not None and record.expires_at <= self._clock():
                        self._drop(key)
                        removed.append(key)
            done = min(start + batch_size, len(candidates))
            yield PurgeProgress(len(removed), done, len(candidates), keys=tuple(removed))

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        with self._lock:
            snapshot = list(self._records.items())
        for key, record in snapshot:
            yield StoredRecord(key, record, record.expires_at <= self._clock())

    def sessions_of(self, user: str) -> list[str]:
        with self._lock:
            return sorted(self._by_user.get(user, ()))

    def owner_of(self, key: str) -> str | None:
        with self._lock:
            return self._owners.get(key) if key in self._records else None

    # -- the index, always changed under the lock with the records ------------------------

    def _own(self, key: str, owner: Owner) -> None:
        if owner is KEEP or self._owners.get(key) == owner:
            return
        self._disown(key)
        if owner is not None:
            self._owners[key] = owner
            self._by_user.setdefault(owner, set()).add(key)

    def _drop(self, key: str) -> None:
        self._records.pop(key, None)
        self._disown(key)

    def _disown(self, key: str) -> None:
        previous = self._owners.pop(key, None)
        if previous is not None:
            keys = self._by_user[previous]
            keys.discard(key)
            if not keys:
                del self._by_user[previous]
