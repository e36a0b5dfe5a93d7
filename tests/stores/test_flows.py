"""The runners of `sessionguard.stores.base`: one flow, run blocking or awaited.

A store writes each operation once, as a flow that yields its I/O steps; `run_flow`,
`iterate_flow` and `arun_flow` do those steps and must agree on everything the flow
sees: the results sent back, the exceptions thrown in, the items it emits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sessionguard.errors import ConflictError, StoreUnavailableError
from sessionguard.stores.base import (
    ABSENT,
    KEEP,
    UPDATE_ATTEMPTS,
    Emit,
    Owner,
    PurgeProgress,
    Record,
    StoreFlow,
    Write,
    arun_flow,
    arun_purge,
    aupdate_by_swap,
    iterate_flow,
    run_flow,
    swap_flow,
    total_purged,
    update_by_swap,
)
from sessionguard.stores.memory import MemoryStore

KEY = "0123456789abcdef0123456789abcdef01234567"


class Boom(Exception):
    """What a step fails with in these tests."""


def doubling(seen: list[Any]) -> StoreFlow[int]:
    """Asks for two steps, records what comes back (or what was thrown in), returns a sum."""
    first = yield 1
    seen.append(first)
    try:
        second = yield "fail"
    except Boom as exc:
        seen.append(exc)
        second = 0
    return int(first) + int(second)


def blocking(step: Any) -> Any:
    if step == "fail":
        raise Boom(step)
    return step * 2


async def awaiting(step: Any) -> Any:
    await asyncio.sleep(0)
    return blocking(step)


def test_run_flow_sends_each_result_and_throws_each_error_into_the_flow() -> None:
    seen: list[Any] = []

    assert run_flow(doubling(seen), blocking) == 2

    assert seen[0] == 2 and isinstance(seen[1], Boom)


async def test_arun_flow_sees_the_same_as_run_flow() -> None:
    seen: list[Any] = []

    assert await arun_flow(doubling(seen), awaiting) == 2

    assert seen[0] == 2 and isinstance(seen[1], Boom)


def unmapped() -> StoreFlow[None]:
    yield "fail"


def mapped() -> StoreFlow[None]:
    try:
        yield "fail"
    except Boom as exc:
        raise StoreUnavailableError("mapped") from exc


RUNS: dict[str, Callable[[StoreFlow[Any]], Any]] = {
    "sync": lambda flow: run_flow(flow, blocking),
    "async": lambda flow: asyncio.run(arun_flow(flow, awaiting)),
}


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_an_error_the_flow_does_not_handle_comes_out_of_the_runner(
    run: Callable[[StoreFlow[Any]], Any],
) -> None:
    with pytest.raises(Boom):
        run(unmapped())
    with pytest.raises(StoreUnavailableError, match="mapped") as caught:
        run(mapped())
    assert isinstance(caught.value.__cause__, Boom)


def progress(count: int, log: list[str]) -> StoreFlow[str]:
    for n in range(count):
        log.append(f"step {n}")
        removed = yield n
        yield Emit(PurgeProgress(removed, n + 1, count))
    return "done"


def test_iterate_flow_hands_on_each_item_as_it_is_emitted() -> None:
    log: list[str] = []
    items = iterate_flow(progress(3, log), blocking)

    assert next(items) == PurgeProgress(0, 1, 3)
    assert log == ["step 0"]  # nothing ran ahead of the consumer
    assert list(items) == [PurgeProgress(2, 2, 3), PurgeProgress(4, 3, 3)]


def test_iterate_flow_closes_the_flow_when_the_consumer_stops() -> None:
    closed: list[bool] = []

    def endless() -> StoreFlow[None]:
        try:
            while True:
                yield Emit((yield 1))
        finally:
            closed.append(True)

    items = iterate_flow(endless(), blocking)
    assert next(items) == 2
    items.close()

    assert closed == [True]


async def test_arun_flow_gives_emitted_items_to_emit() -> None:
    found: list[Any] = []

    assert await arun_flow(progress(2, []), awaiting, found.append) == "done"

    assert found == [PurgeProgress(0, 1, 2), PurgeProgress(2, 2, 2)]


async def test_an_emitted_item_with_no_one_to_take_it_is_an_error() -> None:
    with pytest.raises(TypeError, match="emitted"):
        run_flow(progress(1, []), blocking)
    with pytest.raises(TypeError, match="emitted"):
        await arun_flow(progress(1, []), awaiting)


def test_total_purged_counts_and_reports_what_could_not_be_removed() -> None:
    assert total_purged([PurgeProgress(2, 1, 2), PurgeProgress(3, 2, 2)]) == 5
    with pytest.raises(StoreUnavailableError, match="4 expired records were purged, but 2"):
        total_purged([PurgeProgress(1, 1, 2, ("a",)), PurgeProgress(3, 2, 2, ("b",))])


async def test_arun_purge_counts_as_the_blocking_purge_does() -> None:
    def purge() -> StoreFlow[None]:
        yield Emit(PurgeProgress((yield 1), 1, 2))
        yield Emit(PurgeProgress((yield 2), 2, 2, ("stuck",)))

    assert sum(step.removed for step in iterate_flow(purge(), blocking)) == 6
    with pytest.raises(StoreUnavailableError, match="6 expired records were purged, but 1"):
        await arun_purge(purge(), awaiting)


# -- the compare-and-swap loop, written once -------------------------------------------------


def test_swap_flow_asks_for_load_then_a_conditional_save() -> None:
    flow = swap_flow(KEY, lambda record: Write(b"new", 100.0))
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    class Half:
        def __getattr__(self, name: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                calls.append((name, args, kwargs))
                return Record(b"old", 7, 50.0) if name == "load" else 8

            return call

    assert run_flow(flow, lambda step: step(Half())) == 8
    assert calls == [
        ("load", (KEY,), {}),
        ("save", (KEY, b"new"), {"expires_at": 100.0, "expected_version": 7}),
    ]


class LosingStore(MemoryStore):
    """Every conditional save and delete loses to a concurrent writer."""

    def save(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        if expected_version is not None:
            return None
        return super().save(key, payload, expires_at=expires_at, owner=owner)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        return False if expected_version is not None else super().delete(key)


SwapRun = Callable[[MemoryStore, Any], Awaitable[int | None]]


async def sync_swap(store: MemoryStore, updater: Any) -> int | None:
    return update_by_swap(store, KEY, updater)


async def async_swap(store: MemoryStore, updater: Any) -> int | None:
    return await aupdate_by_swap(store, KEY, updater)


SWAPS: dict[str, SwapRun] = {"sync": sync_swap, "async": async_swap}


@pytest.mark.parametrize("swap", SWAPS.values(), ids=SWAPS.keys())
async def test_swap_loop_gives_up_after_its_attempts_with_backoff_between(
    swap: SwapRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LosingStore()
    store.save(KEY, b"theirs", expires_at=4e9)
    sleeps: list[float] = []

    async def asleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr("time.sleep", sleeps.append)
    monkeypatch.setattr("anyio.sleep", asleep)

    for write in (Write(b"mine", 4e9), Write(None)):
        sleeps.clear()
        with pytest.raises(ConflictError):
            await swap(store, lambda record, write=write: write)
        assert len(sleeps) == UPDATE_ATTEMPTS - 1 and all(0 <= s <= 0.05 for s in sleeps)
    record = store.load(KEY)
    assert record is not None and record.payload == b"theirs"


@pytest.mark.parametrize("swap", SWAPS.values(), ids=SWAPS.keys())
async def test_swap_loop_writes_deletes_or_declines_as_the_updater_says(swap: SwapRun) -> None:
    store = MemoryStore()

    version = await swap(store, lambda record: Write(b"one", 4e9))
    assert version is not None and version != ABSENT
    assert await swap(store, lambda record: None) is None
    assert await swap(store, lambda record: Write(None)) == ABSENT
    assert store.load(KEY) is None
    assert await swap(store, lambda record: Write(None)) == ABSENT  # nothing to delete
