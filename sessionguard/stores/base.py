"""The store contract every backend implements, and the pieces all stores share.

A store keeps, per session key, an opaque payload, a version and an absolute expiry
deadline (Unix seconds). It never interprets the payload. Versions exist for
compare-and-swap: `save(..., expected_version=v)` writes only if the stored version is
still `v`, where `0` means "only if no live record exists". What a version looks like
is the store's business (a counter, a content hash); callers only compare them.

`update(key, updater)` is the read-modify-write the merge on conflict needs: the store
hands the live record to `updater` and stores what it returns, atomically. Stores with a
lock (FileStore's stripe lock, MemoryStore's mutex) hold it for just that step; stores
without one run `update_by_swap`, a bounded compare-and-swap loop.

`ScannableStore` is the operators' side (the `sessionguard` command): `scan()` walks every
stored record, expired ones included, and `purge_expired_batches()` is `purge_expired`
in bounded steps that report their progress. Every built-in store implements both.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.to_thread
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar

from ..errors import (
    ConfigurationError,
    ConflictError,
    CorruptSessionError,
    StoreUnavailableError,
)

__all__ = [
    "ABSENT",
    "AsyncStore",
    "PurgeProgress",
    "Record",
    "ScannableStore",
    "Store",
    "StoredRecord",
    "SyncBackedStore",
    "SyncStore",
    "ThreadedStore",
    "Updater",
    "Write",
    "aupdate_by_swap",
    "key_hash",
    "purge_in_one_go",
    "update_by_swap",
    "validate_key",
]

#: `expected_version` meaning "create; fail if a live record exists".
ABSENT = 0

# Keys become file names and Redis keys, so the charset is kept to what is safe in both.
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Record:
    """One stored session as the store sees it.

    `damage` is set by a store that checks its own framing (`FileStore`) when the bytes
    are not a record as it wrote them; `payload` is then every byte found, so that the
    corruption policy can judge, log and quarantine them. Where nothing was read (a
    record that is not a regular file, or is larger than the store reads), `payload` is
    `b""`. A damaged record never counts as expired: without intact bytes there is no
    deadline to trust.
    """

    payload: bytes
    version: int
    expires_at: float
    damage: CorruptSessionError | None = None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """What `scan` yields: a record with its key, and whether it is past its deadline.

    `load` never returns an expired record; `scan` does, so that operators can count them.
    """

    key: str
    record: Record
    expired: bool


@dataclass(frozen=True, slots=True)
class PurgeProgress:
    """One step of `purge_expired_batches`.

    `removed` counts the records this step removed. `done` and `total` measure the whole
    run in units of the store's choosing (records, directories) for a progress bar;
    `total` is an estimate taken at the start, so `done` may pass it. `errors` holds the
    messages of records this step could not remove; the run goes on past them.
    """

    removed: int
    done: int
    total: int
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Write:
    """What an `update` callback wants in place of the record it was shown.

    `payload=None` deletes the record (`update` then returns `ABSENT`).
    """

    payload: bytes | None
    expires_at: float = 0.0


#: Called with the live record (or `None`); returns what to store, or `None` to store nothing.
#: It may be called more than once, so it must not have side effects beyond its own state.
Updater = Callable[["Record | None"], "Write | None"]

#: How often `update_by_swap` retries before it reports a conflict.
UPDATE_ATTEMPTS = 32


def key_hash(key: str) -> str:
    """A short, stable name for a session in logs, events and errors that does not reveal its id."""
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def validate_key(key: str) -> str:
    """Return `key` if it is safe to use as a file name or Redis key, else raise `ValueError`.

    The middleware validates cookie ids long before this; stores check again so that no
    caller can make a store touch a path outside its directory.
    """
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"invalid session key {key!r}: expected 1-128 of [A-Za-z0-9_-]")
    return key


@runtime_checkable
class SyncStore(Protocol):
    """Blocking store API, driven by the WSGI middleware."""

    def load(self, key: str) -> Record | None:
        """Return the live record for `key`, or `None` if there is none or it has expired.

        Never returns a partially written payload as if it were whole: bytes that a store
        can tell are damaged come back with `Record.damage` set, whatever their age.
        Raises `StoreUnavailableError` when the store cannot be read.
        """

    def save(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        """Atomically replace the record and return its new version.

        With `expected_version` set, write only if the live record's version equals it
        (`ABSENT` = no live record) and return `None` when it does not. With `None`, write
        unconditionally. On `StoreUnavailableError` the previous record is intact.
        """

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """Remove the record; with `expected_version`, only if it still has that version.

        Returns whether a record was removed.
        """

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        """Move the expiry deadline without changing the payload or the version.

        With `expected_version`, only if the live record still has that version (a
        read-only request refreshes only the record it read: never a forward pointer left
        by a concurrent `regenerate()`, whose lifetime is fixed). Returns `False` if there
        is no live record (with that version).
        """

    def update(self, key: str, updater: Updater) -> int | None:
        """Atomically replace the live record (or `None`) with what `updater` returns.

        Returns the new version, or `None` when `updater` returned `None` (nothing was
        written), or `ABSENT` when it deleted the record. Raises `ConflictError` if
        concurrent writers kept winning.
        """

    def purge_expired(self) -> int:
        """Remove every record past its deadline; return how many were removed."""

    def close(self) -> None:
        """Release what the store opened itself."""


@runtime_checkable
class AsyncStore(Protocol):
    """Awaitable twin of `SyncStore`, driven by the ASGI middleware; same contract per method."""

    async def aload(self, key: str) -> Record | None: ...

    async def asave(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None: ...

    async def adelete(self, key: str, *, expected_version: int | None = None) -> bool: ...

    async def atouch(
        self, key: str, expires_at: float, *, expected_version: int | None = None
    ) -> bool: ...

    async def aupdate(self, key: str, updater: Updater) -> int | None: ...

    async def apurge_expired(self) -> int: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Store(SyncStore, AsyncStore, Protocol):
    """A store usable under both adapters."""


@runtime_checkable
class ScannableStore(SyncStore, Protocol):
    """What the `sessionguard` command needs beyond `SyncStore`: walking and purging in steps."""

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        """Yield every stored record with its key, expired ones included; change nothing.

        Reads in batches of about `batch_size`, so memory stays bounded on any store size.
        A record written, refreshed or deleted while the scan runs may be seen in either
        state, or (if it was created after its batch was read) not at all. Raises
        `StoreUnavailableError` when the store cannot be read.
        """

    def purge_expired_batches(self, batch_size: int = 1000) -> Iterator[PurgeProgress]:
        """`purge_expired` in steps of at most about `batch_size` records.

        Removes only records that are past their deadline *when they are removed*: a
        record refreshed or rewritten after the purge found it is kept. A record that
        cannot be removed is reported in `PurgeProgress.errors` and skipped; an outage of
        the whole store raises `StoreUnavailableError`.
        """


def purge_in_one_go(store: ScannableStore) -> int:
    """`purge_expired` on top of `purge_expired_batches`: the total removed.

    Raises `StoreUnavailableError` after the run if some records could not be removed.
    """
    removed = 0
    errors: list[str] = []
    for step in store.purge_expired_batches():
        removed += step.removed
        errors.extend(step.errors)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StoreUnavailableError(
            f"{removed} expired records were purged, but {len(errors)} could not be: "
            f"{errors[0]}{more}"
        )
    return removed


class SyncBackedStore(abc.ABC):
    """Base for stores written once, synchronously: the `a`-methods call the sync ones via `_run`.

    `_run` calls inline, which is right for stores that do no I/O (`MemoryStore`).
    `ThreadedStore` overrides it to use a thread pool.
    """

    @abc.abstractmethod
    def load(self, key: str) -> Record | None: ...

    @abc.abstractmethod
    def save(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None: ...

    @abc.abstractmethod
    def delete(self, key: str, *, expected_version: int | None = None) -> bool: ...

    @abc.abstractmethod
    def touch(
        self, key: str, expires_at: float, *, expected_version: int | None = None
    ) -> bool: ...

    @abc.abstractmethod
    def update(self, key: str, updater: Updater) -> int | None: ...

    @abc.abstractmethod
    def purge_expired(self) -> int: ...

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Nothing to release by default."""

    async def _run(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        return func(*args, **kwargs)

    async def aload(self, key: str) -> Record | None:
        return await self._run(self.load, key)

    async def asave(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        return await self._run(
            self.save, key, payload, expires_at=expires_at, expected_version=expected_version
        )

    async def adelete(self, key: str, *, expected_version: int | None = None) -> bool:
        return await self._run(self.delete, key, expected_version=expected_version)

    async def atouch(
        self, key: str, expires_at: float, *, expected_version: int | None = None
    ) -> bool:
        return await self._run(self.touch, key, expires_at, expected_version=expected_version)

    async def aupdate(self, key: str, updater: Updater) -> int | None:
        return await self._run(self.update, key, updater)

    async def apurge_expired(self) -> int:
        return await self._run(self.purge_expired)

    async def aclose(self) -> None:
        self.close()


class ThreadedStore(SyncBackedStore):
    """A `SyncBackedStore` whose async methods run the blocking ones in worker threads.

    Through anyio, so the store works under asyncio and trio alike (Starlette and its test
    client run on either). At most `max_threads` calls of one store run at once, on a
    limiter of the store's own, so a slow disk cannot take the threads the event loop's
    other work needs; context variables are carried into the worker thread.
    """

    def __init__(self, *, max_threads: int = 8) -> None:
        if max_threads < 1:
            raise ConfigurationError(f"max_threads must be at least 1, got {max_threads!r}")
        self._max_threads = max_threads
        # A limiter belongs to one event loop run: one per run, made on first use in it.
        self._limiter: RunVar[CapacityLimiter] = RunVar(f"sessionguard-{id(self)}")

    async def _run(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        try:
            limiter = self._limiter.get()
        except LookupError:
            limiter = CapacityLimiter(self._max_threads)
            self._limiter.set(limiter)
        call = functools.partial(func, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=limiter)

    async def aclose(self) -> None:
        # Closing may block (a pool, a connection): do it off the event loop.
        await anyio.to_thread.run_sync(self.close)


def update_by_swap(store: SyncStore, key: str, updater: Updater) -> int | None:
    """`update` for stores without a lock: load, ask `updater`, compare-and-swap; retry.

    Between lost attempts it waits a short random time (see `_backoff`), so that
    writers of one hot session spread out instead of colliding again in lockstep.
    """
    for attempt in range(UPDATE_ATTEMPTS):
        if attempt:
            time.sleep(_backoff(attempt))
        current = store.load(key)
        write = updater(current)
        if write is None:
            return None
        expected = current.version if current is not None else ABSENT
        if write.payload is None:
            if current is None or store.delete(key, expected_version=expected):
                return ABSENT
            continue
        version = store.save(
            key, write.payload, expires_at=write.expires_at, expected_version=expected
        )
        if version is not None:
            return version
    raise _conflict(key)


async def aupdate_by_swap(store: AsyncStore, key: str, updater: Updater) -> int | None:
    """The awaitable twin of `update_by_swap`."""
    for attempt in range(UPDATE_ATTEMPTS):
        if attempt:
            await anyio.sleep(_backoff(attempt))
        current = await store.aload(key)
        write = updater(current)
        if write is None:
            return None
        expected = current.version if current is not None else ABSENT
        if write.payload is None:
            if current is None or await store.adelete(key, expected_version=expected):
                return ABSENT
            continue
        version = await store.asave(
            key, write.payload, expires_at=write.expires_at, expected_version=expected
        )
        if version is not None:
            return version
    raise _conflict(key)


def _backoff(attempt: int) -> float:
    # Full jitter, capped: at most 1, 2, 4 ... 50 ms, about 1.3 s over all attempts.
    return random.uniform(0, min(0.05, 0.001 * 2 ** (attempt - 1)))


def _conflict(key: str) -> ConflictError:
    return ConflictError(
        f"{UPDATE_ATTEMPTS} compare-and-swap attempts on one session all lost to concurrent "
        "writers; the stored data is intact and the client may retry"
    )
