"""The stores' operator API: `scan()` (every record, expired ones included, in batches),
`purge_expired_batches()` (bounded steps with progress) and FileStore's leftover temp files."""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionguard.errors import StoreUnavailableError
from sessionguard.stores import FileStore, MemoryStore
from sessionguard.stores.base import ScannableStore
from sessionguard.stores.redis import RedisStore
from sessionguard.stores.sql import SQLStore

from .plant import key

WAIT = 10.0


@pytest.fixture(params=["memory", "file", "sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScannableStore]:
    opened: ScannableStore
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "file":
        opened = FileStore(tmp_path / "sessions", durable=False)
    elif request.param == "sqlite":
        opened = SQLStore(f"sqlite:///{tmp_path / 's.db'}")
    elif request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        opened = SQLStore(server.url, table_name=f"scan_{uuid.uuid4().hex[:12]}")
    else:
        server = request.getfixturevalue("redis_server")
        opened = RedisStore(server.url, prefix=f"scan:{uuid.uuid4().hex}:")
    yield opened
    opened.close()


def expires_by_itself(store: ScannableStore) -> bool:
    return isinstance(store, RedisStore)


def test_scan_yields_every_record_with_its_key_and_whether_it_expired(
    store: ScannableStore,
) -> None:
    now = float(int(time.time()))
    for i in range(3):
        store.save(key("live", i), b"live %d" % i, expires_at=now + 60 + i)
    for i in range(2):
        store.save(key("old", i), b"old %d" % i, expires_at=now - 60 - i)

    found = {item.key: item for item in store.scan()}

    expected = {key("live", i): (b"live %d" % i, now + 60 + i, False) for i in range(3)}
    if not expires_by_itself(store):
        expected |= {key("old", i): (b"old %d" % i, now - 60 - i, True) for i in range(2)}
    seen = {
        name: (item.record.payload, item.record.expires_at, item.expired)
        for name, item in found.items()
    }
    assert seen == expected
    for name in expected:
        loaded = store.load(name)
        if loaded is not None:  # the version is the one compare-and-swap needs
            assert found[name].record.version == loaded.version


def test_scan_pages_through_many_more_records_than_one_batch(store: ScannableStore) -> None:
    now = time.time()
    names = {key("many", i) for i in range(53)}
    for name in names:
        store.save(name, name.encode(), expires_at=now + 60)

    found = [item.key for item in store.scan(batch_size=7)]

    assert set(found) == names
    if not isinstance(store, RedisStore):  # SCAN may repeat a key during a rehash
        assert len(found) == len(names)


def test_purge_in_batches_removes_only_expired_records_in_bounded_steps(
    store: ScannableStore,
) -> None:
    now = time.time()
    for i in range(10):
        store.save(key("old", i), b"old", expires_at=now - 5)
    store.save(key("live", 0), b"live", expires_at=now + 60)

    steps = list(store.purge_expired_batches(3))

    if expires_by_itself(store):
        # Redis dropped them itself; purge only walks the keys, for ones whose TTL was lost.
        assert sum(step.removed for step in steps) == 0
    else:
        assert sum(step.removed for step in steps) == 10
        assert all(step.removed <= 3 for step in steps)
        assert steps[-1].done == steps[-1].total
        assert [item.key for item in store.scan()] == [key("live", 0)]
    assert store.load(key("live", 0)) is not None


def test_sql_purge_reports_progress_in_rows(tmp_path: Path) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 's.db'}")
    now = time.time()
    for i in range(10):
        store.save(key("old", i), b"old", expires_at=now - 5)

    steps = [(s.removed, s.done, s.total) for s in store.purge_expired_batches(3)]

    assert steps == [(3, 3, 10), (3, 6, 10), (3, 9, 10), (1, 10, 10)]
    store.close()


def test_file_scan_skips_temp_files_and_files_that_are_not_records(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")
    now = time.time()
    store.save(key("ok", 0), b"record", expires_at=now + 60)
    fan_out = Path(store._locate(key("ok", 0))[1]).parent
    misplaced = next(
        name for name in ("notes", "LICENSE", "Makefile") if Path(store._locate(name)[0]) != fan_out
    )
    for path in (
        fan_out / f".{key('ok', 0)}.tmp",
        fan_out / ".DS_Store",
        fan_out / "notes.txt",
        fan_out / misplaced,
        tmp_path / "sessions" / "README",
    ):
        path.write_bytes(b"not a record")

    assert [item.key for item in store.scan()] == [key("ok", 0)]
    store.close()


def test_leftover_temp_files_skips_a_write_in_progress_and_reports_orphans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "sessions")
    writing, orphan = key("writing", 0), key("orphan", 0)
    for name in (writing, orphan):
        Path(store._locate(name)[0]).mkdir(parents=True, exist_ok=True)
    Path(store._locate(orphan)[1]).with_name(f".{orphan}.tmp").write_bytes(b"half")
    temp = Path(store._locate(writing)[1]).with_name(f".{writing}.tmp")
    lock = Path(store.directory, ".locks", f"{store._locate(writing)[2]:02x}")
    asked = threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if threading.current_thread() is not threading.main_thread():
            asked.set()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        real_flock(fd, fcntl.LOCK_EX)  # this test is a writer in the middle of a save
        temp.write_bytes(b"new")
        scanning = pool.submit(store.leftover_temp_files)
        deadline = time.monotonic() + WAIT
        while not asked.is_set() and not scanning.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.replace(temp, store._locate(writing)[1])  # the write completes
    finally:
        os.close(fd)  # releases the lock
        pool.shutdown(wait=True)

    assert scanning.result(timeout=WAIT) == [orphan]
    store.close()


def test_file_purge_goes_on_past_a_record_it_cannot_remove_and_then_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "sessions", durable=False)
    now = time.time()
    for i in range(5):
        store.save(key("old", i), b"old", expires_at=now - 5)
    stuck = store._locate(key("old", 2))[1]
    real_unlink = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path) == stuck:
            raise PermissionError(13, "Permission denied", path)
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)

    with pytest.raises(StoreUnavailableError, match="4 expired records were purged, but 1"):
        store.purge_expired()

    assert [item.key for item in store.scan()] == [key("old", 2)]
    store.close()
