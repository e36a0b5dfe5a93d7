"""`sessionguard.purging.purge_expired`: each record a purge removes is reported to the
app's hooks as an `expired` event (reason `"purged"`), on every store whose expiry follows
the test's clock (Redis, which expires keys by itself, has its own in
test_redis_deadline.py)."""

from __future__ import annotations

import pytest

from sessionguard.events import Event, EventKind
from sessionguard.purging import purge_expired
from sessionguard.stores.base import BaseStore, key_hash
from tests.clock import FakeClock

from .test_contract import StoreAPI, api, pytest_generate_tests, store

__all__ = ["api", "pytest_generate_tests", "store"]


def scannable(api: StoreAPI) -> BaseStore:
    assert isinstance(api.store, BaseStore)
    return api.store


@pytest.mark.moves_time
async def test_each_purged_record_is_reported_once_and_no_live_one_is(
    api: StoreAPI, clock: FakeClock
) -> None:
    expired = [f"expired-{i}" for i in range(5)]
    for key in expired:
        await api.save(key, b"old", expires_at=clock.now + 10)
    await api.save("live", b"new", expires_at=clock.now + 100)
    clock.advance(50)
    seen: list[Event] = []

    assert purge_expired(scannable(api), hooks=[seen.append], batch_size=2) == 5
    assert purge_expired(scannable(api), hooks=[seen.append]) == 0

    assert all((e.kind, e.reason) == (EventKind.EXPIRED, "purged") for e in seen)
    assert sorted(e.session or "" for e in seen) == sorted(key_hash(k) for k in expired)
    assert await api.load("live") is not None


@pytest.mark.moves_time
async def test_a_failing_hook_neither_stops_the_purge_nor_loses_a_record(
    api: StoreAPI, clock: FakeClock
) -> None:
    for key in ("a", "b", "c"):
        await api.save(key, b"old", expires_at=clock.now + 10)
    clock.advance(50)

    def broken(event: Event) -> None:
        raise RuntimeError("the audit log is down")

    assert purge_expired(scannable(api), hooks=[broken]) == 3
    assert [await api.load(k) for k in ("a", "b", "c")] == [None, None, None]
