"""The store contract every backend implements, and the pieces all stores share.

A store keeps, per session key, an opaque payload, a version and an absolute expiry
deadline (Unix seconds). It never interprets the payload. Versions exist for
compare-and-swap: `save(..., expected_version=v)` writes only if the stored version is
still `v`, where `0` means "only if no live record exists". What a version looks like
is the store's business (a counter, a content hash); callers only compare them.

`update(key, updater)` is the read-modify-write the merge on conflict needs: the store
hands the live record to `updater` and stores what it returns, atomically. Stores with a
lock (FileStore's stripe lock, MemoryStore's mutex) hold it for just that step; stores
without one run a bounded compare-and-swap loop (`update_by_swap`, `aupdate_by_swap`).

`ScannableStore` is the operators' side (the `sessionguard` command): `scan()` walks every
stored record, expired ones included, and `purge_expired_batches()` is `purge_expired`
in bounded steps that report their progress. Every built-in store implements both.

The protocols are the contract; `BaseStore` is what the built-in stores share. Nothing
is written twice for the blocking and the awaitable API: a store either does its work
in blocking code that the `a`-methods run in worker threads (`BaseStore`'s defaults), or
writes each operation once as a `StoreFlow`, a generator of I/O steps that `run_flow`
does on a blocking client and `arun_flow` on an asyncio one (as redis-py builds each
command once for its two clients). The compare-and-swap loop is such a flow too.
"""

from __future__ import annotations

import abc
import enum
import functools
import hashlib
import random
import re
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from operator import methodcaller
from typing import (
    Any,
    Final,
    Literal,
    NamedTuple,
    NoReturn,
    Protocol,
    TypeAlias,
    TypeVar,
    cast,
    runtime_checkable,
)

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
    "KEEP",
    "UPDATE_ATTEMPTS",
    "AsyncStore",
    "BaseStore",
    "Emit",
    "Owner",
    "PurgeProgress",
    "Record",
    "ScannableStore",
    "Store",
    "StoreFlow",
    "StoredRecord",
    "SyncBackedStore",
    "SyncStore",
    "ThreadedStore",
    "Updater",
    "Write",
    "arun_flow",
    "arun_purge",
    "aupdate_by_swap",
    "iterate_flow",
    "key_hash",
    "purge_in_one_go",
    "run_flow",
    "swap_flow",
    "total_purged",
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
    messages of records this step could not remove; the run goes on past them. `keys`
    names the records removed, for `sessionguard.purging` to report one by one.
    """

    removed: int
    done: int
    total: int
    errors: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


class _Keep(enum.Enum):
    KEEP = "keep"


#: `owner=KEEP`: the write does not change who owns the record (see `Owner`).
KEEP: Final = _Keep.KEEP

#: Who a record belongs to, for a store that indexes sessions by user
#: (`BaseStore.indexes_users`): a user id, `None` for no one, or `KEEP` for whoever owned
#: it before. The store keeps the owner with the record and its per-user index in the
#: same atomic step as the write; deleting, expiring or purging a record drops it from
#: the index. Stores that keep no index ignore it.
Owner: TypeAlias = str | None | Literal[_Keep.KEEP]


@dataclass(frozen=True, slots=True)
class Write:
    """What an `update` callback wants in place of the record it was shown.

    `payload=None` deletes the record (`update` then returns `ABSENT`). `owner`: see
    `Owner`.
    """

    payload: bytes | None
    expires_at: float = 0.0
    owner: Owner = KEEP


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
    return total_purged(store.purge_expired_batches())


def total_purged(steps: Iterable[PurgeProgress]) -> int:
    """The records `steps` removed; `StoreUnavailableError` after the last step if some
    could not be removed."""
    removed = 0
    errors: list[str] = []
    for step in steps:
        removed += step.removed
        errors.extend(step.errors)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StoreUnavailableError(
            f"{removed} expired records were purged, but {len(errors)} could not be: "
            f"{errors[0]}{more}"
        )
    return removed


class BaseStore(abc.ABC):
    """The base of the built-in stores: the blocking API, and awaitable twins that by
    default run it in worker threads.

    A subclass writes `load`, `save`, `delete`, `touch`, `scan` and
    `purge_expired_batches`; `update` defaults to the compare-and-swap loop
    (`update_by_swap`) and `purge_expired` to `purge_in_one_go`. Each `a`-method runs
    its blocking twin through `_run`: in a worker thread, through anyio, so the store
    works under asyncio and trio alike (Starlette and its test client run on either). At
    most `max_threads` calls of one store run at once, on a limiter of the store's own,
    so a slow disk cannot take the threads the event loop's other work needs; context
    variables are carried into the worker thread.

    A store that does no I/O (`MemoryStore`) overrides `_run` to call inline. A store
    with an asyncio client of its own (`RedisStore`, `SQLStore`) overrides the
    `a`-methods instead, with the same code: each operation is a `StoreFlow`, run by
    `run_flow` on the blocking client and by `arun_flow` on the asyncio one.
    """

    #: Whether the store keeps each record's owner and lists a user's sessions
    #: (`save(..., owner=)`, `Write.owner`, `sessions_of`, `owner_of`).
    indexes_users: bool = False

    def __init__(self, *, max_threads: int = 8) -> None:
        if max_threads < 1:
            raise ConfigurationError(f"max_threads must be at least 1, got {max_threads!r}")
        self._max_threads = max_threads
        # A limiter belongs to one event loop run: one per run, made on first use in it.
        self._limiter: RunVar[CapacityLimiter] = RunVar(f"sessionguard-{id(self)}")

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
    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]: ...

    @abc.abstractmethod
    def purge_expired_batches(self, batch_size: int = 1000) -> Iterator[PurgeProgress]: ...

    def update(self, key: str, updater: Updater) -> int | None:
        """By default the compare-and-swap loop; a store with a lock overrides it."""
        return update_by_swap(self, key, updater)

    def purge_expired(self) -> int:
        return purge_in_one_go(self)

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Nothing to release by default."""

    async def _run(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        try:
            limiter = self._limiter.get()
        except LookupError:
            limiter = CapacityLimiter(self._max_threads)
            self._limiter.set(limiter)
        call = functools.partial(func, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=limiter)

    async def aload(self, key: str) -> Record | None:
        return await self._run(self.load, key)

    async def asave(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        # `owner` only reaches a store that indexes users: other stores' `save` has none.
        extra = {} if owner is KEEP else {"owner": owner}
        return await self._run(
            self.save,
            key,
            payload,
            expires_at=expires_at,
            expected_version=expected_version,
            **extra,
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

    def sessions_of(self, user: str) -> list[str]:
        """The keys of the records `user` owns, for a store that `indexes_users` (one that
        keeps expired records until a purge may list those too: callers check each)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no index of sessions by user")

    def owner_of(self, key: str) -> str | None:
        """Who owns the record of `key` (`None`: no one, or no record)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no index of sessions by user")

    async def asessions_of(self, user: str) -> list[str]:
        return await self._run(self.sessions_of, user)

    async def aowner_of(self, key: str) -> str | None:
        return await self._run(self.owner_of, key)

    async def aclose(self) -> None:
        # Closing may block (a pool, a connection): off the event loop too.
        await self._run(self.close)


#: The names of the two classes that `BaseStore` replaces: `SyncBackedStore` (whose
#: `a`-methods called inline, as `MemoryStore`'s still do) and `ThreadedStore`.
SyncBackedStore = BaseStore
ThreadedStore = BaseStore


# -- flows: an operation written once, run blocking or awaited --------------------------------

#: A store operation written once for both of a store's clients: a generator that yields
#: each I/O step it needs, is sent the step's result (or thrown its exception, so that
#: the flow maps errors as it would around a call) and returns the operation's result.
#: What a step is, is the store's business: the runner only hands it to `perform`.
StoreFlow = Generator[Any, Any, _T]


@dataclass(frozen=True, slots=True)
class Emit:
    """Yielded by a flow to hand `item` (a `PurgeProgress`, say) to whoever runs it."""

    item: Any


def run_flow(flow: StoreFlow[_T], perform: Callable[[Any], Any]) -> _T:
    """Run `flow`, doing each step with the blocking `perform(step)`; return its result."""
    steps = iterate_flow(flow, perform)
    try:
        item = next(steps)
    except StopIteration as done:
        return cast(_T, done.value)
    steps.close()
    return _refuse(item)


def iterate_flow(flow: StoreFlow[_T], perform: Callable[[Any], Any]) -> Generator[Any, None, _T]:
    """`run_flow` for a flow that emits: yields each item as the flow emits it."""
    try:
        running, step = _resume(flow)
        while running:
            if isinstance(step, Emit):
                yield step.item
                running, step = _resume(flow)
            else:
                running, step = _resume(flow, *_outcome(perform, step))
        return cast(_T, step)
    finally:
        flow.close()


async def arun_flow(
    flow: StoreFlow[_T],
    perform: Callable[[Any], Awaitable[Any]],
    emit: Callable[[Any], object] | None = None,
) -> _T:
    """Run `flow`, awaiting `perform(step)` for each step; what it emits goes to `emit`."""
    hand_on = emit or _refuse
    try:
        running, step = _resume(flow)
        while running:
            if isinstance(step, Emit):
                hand_on(step.item)
                running, step = _resume(flow)
            else:
                running, step = _resume(flow, *await _aoutcome(perform, step))
        return cast(_T, step)
    finally:
        flow.close()


async def arun_purge(flow: StoreFlow[Any], perform: Callable[[Any], Awaitable[Any]]) -> int:
    """`apurge_expired` for a flow that emits `PurgeProgress` (what `purge_expired_batches`
    runs blocking): the total removed, as `purge_in_one_go` counts it."""
    steps: list[PurgeProgress] = []
    await arun_flow(flow, perform, steps.append)
    return total_purged(steps)


def _resume(
    flow: StoreFlow[Any], value: Any = None, error: BaseException | None = None
) -> tuple[bool, Any]:
    """Send `value` into `flow` (throw `error` if set): (True, its next step) or (False,
    its result)."""
    try:
        return True, (flow.send(value) if error is None else flow.throw(error))
    except StopIteration as done:
        return False, done.value


def _outcome(perform: Callable[[Any], Any], step: Any) -> tuple[Any, BaseException | None]:
    try:
        return perform(step), None
    except BaseException as exc:  # thrown into the flow, which maps it or raises it on
        return None, exc


async def _aoutcome(
    perform: Callable[[Any], Awaitable[Any]], step: Any
) -> tuple[Any, BaseException | None]:
    try:
        return await perform(step), None
    except BaseException as exc:
        return None, exc


def _refuse(item: Any) -> NoReturn:
    raise TypeError(f"the flow emitted {item!r}, and nothing was given to take it")


# -- the compare-and-swap loop -----------------------------------------------------------------


class _SwapHalf(NamedTuple):
    """What the steps of `swap_flow` call: one store's blocking or awaitable methods."""

    load: Callable[[str], Any]
    save: Callable[..., Any]
    delete: Callable[..., Any]
    sleep: Callable[[float], Any]


def swap_flow(key: str, updater: Updater) -> StoreFlow[int | None]:
    """`update` for stores without a lock: load, ask `updater`, compare-and-swap; retry.

    Between lost attempts it waits a short random time (see `_backoff`), so that
    writers of one hot session spread out instead of colliding again in lockstep. Each
    step calls one method of a `_SwapHalf`.
    """
    for attempt in range(UPDATE_ATTEMPTS):
        if attempt:
            yield methodcaller("sleep", _backoff(attempt))
        current: Record | None = yield methodcaller("load", key)
        write = updater(current)
        if write is None:
            return None
        expected = current.version if current is not None else ABSENT
        if write.payload is None:
            if current is None or (yield methodcaller("delete", key, expected_version=expected)):
                return ABSENT
            continue
        # The owner only reaches a store that indexes users (others' `save` has none).
        owned = {} if write.owner is KEEP else {"owner": write.owner}
        version: int | None = yield methodcaller(
            "save",
            key,
            write.payload,
            expires_at=write.expires_at,
            expected_version=expected,
            **owned,
        )
        if version is not None:
            return version
    raise _conflict(key)


def update_by_swap(store: SyncStore, key: str, updater: Updater) -> int | None:
    """`swap_flow` on the store's blocking methods."""
    half = _SwapHalf(store.load, store.save, store.delete, time.sleep)
    return run_flow(swap_flow(key, updater), lambda step: step(half))


async def aupdate_by_swap(store: AsyncStore, key: str, updater: Updater) -> int | None:
    """`swap_flow` on the store's awaitable methods."""
    half = _SwapHalf(store.aload, store.asave, store.adelete, anyio.sleep)
    return await arun_flow(swap_flow(key, updater), lambda step: step(half))


def _backoff(attempt: int) -> float:
    # Full jitter, capped: at most 1, 2, 4 ... 50 ms, about 1.3 s over all attempts.
    return random.uniform(0, min(0.05, 0.001 * 2 ** (attempt - 1)))


def _conflict(key: str) -> ConflictError:
    return ConflictError(
        f"{UPDATE_ATTEMPTS} compare-and-swap attempts on one session all lost to concurrent "
        "writers; the stored data is intact and the client may retry"
    )
