"""Run the core's flows against a store: once blocking (WSGI), once awaiting (ASGI).

The two drivers differ only in `op(store)` versus `await aop(store)`; everything else
(what to load, when to retry, how to merge) lives in the flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import anyio.to_thread

from .errors import ConflictError, SessionTooLargeError, StoreUnavailableError
from .events import Event, EventBus, EventKind
from .ops import (
    Decide,
    Delete,
    Flow,
    Load,
    LoadLegacy,
    Op,
    Quarantine,
    Save,
    SessionsOf,
    Touch,
    Update,
    Updated,
    key_hash,
)
from .quarantine import copy_aside
from .stores.base import KEEP, AsyncStore, Record, SyncStore, Updater, Write

__all__ = ["run_async", "run_sync"]

_T = TypeVar("_T")
# What an operation may raise that the flow answers itself (503, 413): a store outage, a
# lost compare-and-swap, or an `update` callback that produced a session over `max_size`.
_THROWN_INTO_FLOW = (StoreUnavailableError, ConflictError, SessionTooLargeError)


def run_sync(flow: Flow[_T], store: SyncStore, events: EventBus | None = None) -> _T:
    """Drive `flow` to completion with blocking store calls; return the flow's result.

    With `events`, each store operation is reported with its duration.
    """
    steps = _Steps(flow, events)
    for op in steps:
        try:
            steps.result = _perform(op, store)
        except _THROWN_INTO_FLOW as exc:
            steps.error = exc  # the flow answers it (a 503, a 413, another attempt)
    return steps.value


async def run_async(flow: Flow[_T], store: AsyncStore, events: EventBus | None = None) -> _T:
    """Drive `flow` to completion with awaited store calls; return the flow's result."""
    steps = _Steps(flow, events)
    for op in steps:
        try:
            steps.result = await _aperform(op, store)
        except _THROWN_INTO_FLOW as exc:
            steps.error = exc
    return steps.value


class _Steps(Generic[_T]):
    """A flow being driven, shared by both drivers: iterating gives the operations to
    perform; each one's `result` (or the `error` it raised: an outage, a lost swap, an
    oversized session) goes back into the flow, and `value` is what it returned."""

    __slots__ = ("_events", "_flow", "error", "result", "value")

    def __init__(self, flow: Flow[_T], events: EventBus | None) -> None:
        self._flow = flow
        self._events = events
        self.result: Any = None
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[Op]:
        flow, events = self._flow, self._events
        try:
            op = next(flow)
            while True:
                started = time.perf_counter()
                yield op
                if self.error is not None:
                    error, self.error = self.error, None
                    op = flow.throw(error)
                else:
                    if events:
                        _report(events, op, started)
                    op = flow.send(self.result)
        except StopIteration as stop:
            self.value: _T = stop.value


_KINDS: dict[type[Op], EventKind] = {
    Load: EventKind.LOAD,
    Save: EventKind.SAVE,
    Update: EventKind.UPDATE,
    Delete: EventKind.DELETE,
    Quarantine: EventKind.DELETE,
    Touch: EventKind.TOUCH,
}


def _report(events: EventBus, op: Op, started: float) -> None:
    if isinstance(op, LoadLegacy | SessionsOf):
        return  # not an operation on one session of our store
    duration = time.perf_counter() - started
    events.emit(Event(_KINDS[type(op)], key_hash(op.key), duration=duration))


def _perform(op: Op, store: SyncStore) -> Any:
    match op:
        case Load(key):
            return store.load(key)
        case Save(key, payload, expires_at, expected, owner):
            if owner is KEEP:  # a store that indexes no users has no `owner` parameter
                return store.save(key, payload, expires_at=expires_at, expected_version=expected)
            return store.save(  # type: ignore[call-arg]
                key, payload, expires_at=expires_at, expected_version=expected, owner=owner
            )
        case Delete(key, expected):
            return store.delete(key, expected_version=expected)
        case Touch(key, expires_at, expected):
            return store.touch(key, expires_at, expected_version=expected)
        case Update(key, decide):
            updater, found = _recording(decide)
            return Updated(store.update(key, updater), found())
        case Quarantine():
            _write_quarantine(op)
            return store.delete(op.key, expected_version=op.record.version)
        case LoadLegacy(source, legacy_id):
            return source.load(legacy_id)
        case SessionsOf(user):
            return store.sessions_of(user)  # type: ignore[attr-defined]


async def _aperform(op: Op, store: AsyncStore) -> Any:
    match op:
        case Load(key):
            return await store.aload(key)
        case Save(key, payload, expires_at, expected, owner):
            if owner is KEEP:
                return await store.asave(
                    key, payload, expires_at=expires_at, expected_version=expected
                )
            return await store.asave(  # type: ignore[call-arg]
                key, payload, expires_at=expires_at, expected_version=expected, owner=owner
            )
        case Delete(key, expected):
            return await store.adelete(key, expected_version=expected)
        case Touch(key, expires_at, expected):
            return await store.atouch(key, expires_at, expected_version=expected)
        case Update(key, decide):
            updater, found = _recording(decide)
            return Updated(await store.aupdate(key, updater), found())
        case Quarantine():
            await anyio.to_thread.run_sync(_write_quarantine, op)
            return await store.adelete(op.key, expected_version=op.record.version)
        case LoadLegacy(source, legacy_id):
            return await anyio.to_thread.run_sync(source.load, legacy_id)
        case SessionsOf(user):
            return await store.asessions_of(user)  # type: ignore[attr-defined]


def _recording(decide: Decide[Any]) -> tuple[Updater, Callable[[], Any]]:
    """`decide` as the store's `Updater`, and a way to get what it found the last time the
    store called it: the one place where an update's findings are kept."""
    last: list[Any] = []

    def updater(record: Record | None) -> Write | None:
        write, found = decide(record)
        last[:] = [found]
        return write

    def found() -> Any:
        if not last:  # pragma: no cover - every store calls the updater at least once
            raise RuntimeError("the store never called the update's updater")
        return last[0]

    return updater, found


def _write_quarantine(op: Quarantine) -> None:
    try:
        copy_aside(op.directory, op.file_name, op.record.payload)
    except OSError as exc:
        raise _quarantine_error(op, exc) from exc


def _quarantine_error(op: Quarantine, exc: OSError) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"could not copy a corrupt session into the quarantine directory {op.directory!r}: "
        f"{exc.strerror or exc}. The record was left in the store; fix the directory or "
        "remove quarantine_dir from the CorruptionPolicy."
    )
