"""A store of one's own: subclass `BaseStore`, write the six blocking methods, and the
rest (compare-and-swap `update`, `purge_expired`, every async twin) comes with it, as
the README promises. Driven through both middlewares' flows."""

from __future__ import annotations

import time
from collections.abc import Iterator

from sessionguard.driver import run_async, run_sync
from sessionguard.options import build_core
from sessionguard.session import Session
from sessionguard.stores.base import (
    ABSENT,
    BaseStore,
    PurgeProgress,
    Record,
    StoredRecord,
    Write,
)


class DictStore(BaseStore):
    """Records in a dict: versions are counters, deadlines are honoured on load."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, Record] = {}

    def load(self, key: str) -> Record | None:
        record = self.records.get(key)
        return record if record is not None and record.expires_at > time.time() else None

    def save(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        current = self.load(key)
        if expected_version is not None:
            if (current.version if current else ABSENT) != expected_version:
                return None
        version = (current.version if current else 0) + 1
        self.records[key] = Record(payload, version, expires_at)
        return version

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        current = self.load(key)
        if current is None or expected_version not in (None, current.version):
            return False
        del self.records[key]
        return True

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        current = self.load(key)
        if current is None or expected_version not in (None, current.version):
            return False
        self.records[key] = Record(current.payload, current.version, expires_at)
        return True

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        now = time.time()
        for key, record in list(self.records.items()):
            yield StoredRecord(key, record, record.expires_at <= now)

    def purge_expired_batches(self, batch_size: int = 1000) -> Iterator[PurgeProgress]:
        expired = [found.key for found in self.scan() if found.expired]
        for key in expired:
            del self.records[key]
        yield PurgeProgress(removed=len(expired), done=1, total=1)


def test_update_and_purge_come_with_the_base() -> None:
    store = DictStore()
    store.save("a" * 40, b"one", expires_at=time.time() + 60)
    version = store.update("a" * 40, lambda record: Write(b"two", time.time() + 60))
    assert version == 2 and store.load("a" * 40) == Record(
        b"two", 2, store.records["a" * 40].expires_at
    )
    store.save("b" * 40, b"old", expires_at=time.time() - 1)
    assert store.purge_expired() == 1 and "b" * 40 not in store.records


async def test_the_async_twins_come_with_the_base() -> None:
    store = DictStore()
    assert await store.asave("a" * 40, b"x", expires_at=time.time() + 60) == 1
    record = await store.aload("a" * 40)
    assert record is not None and record.payload == b"x"
    assert await store.aupdate("a" * 40, lambda r: Write(b"y", time.time() + 60)) == 2
    assert await store.adelete("a" * 40) is True


async def test_both_middlewares_flows_run_on_it() -> None:
    core = build_core("k" * 32)
    store = DictStore()
    session = run_sync(core.open(None), store)
    assert isinstance(session, Session)
    session["user"] = "alice"
    cookies = run_sync(core.commit(session), store)
    assert isinstance(cookies, tuple) and cookies
    cookie = cookies[0].split(";")[0]
    again = await run_async(core.open(cookie), store)
    assert isinstance(again, Session) and dict(again) == {"user": "alice"}
