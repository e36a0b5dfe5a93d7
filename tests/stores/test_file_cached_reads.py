"""`FileStore.aload` reads on the event loop only what the kernel has cached.

A record whose pages are in the page cache is read on the loop (no thread hop); one
that is not, or any case the cached read does not handle, is read by the blocking
`load` in a worker thread, with the same result. The page cache is emptied for real
(`posix_fadvise(POSIX_FADV_DONTNEED)` drops a clean file's pages), so the fallback is
driven by the kernel, not by a stand-in.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sessionguard.errors import CorruptReason
from sessionguard.stores import cachedio
from sessionguard.stores.base import Record
from sessionguard.stores.file import FileStore

KEY = "a1" * 20
PAYLOAD = b"x" * 3000


class ThreadCountingFileStore(FileStore):
    """A real FileStore that counts blocking `load` calls: `aload` makes one only when
    the read could not be answered from the kernel's caches."""

    blocking_loads = 0

    def load(self, key: str) -> Record | None:
        self.blocking_loads += 1
        return super().load(key)


@pytest.fixture
def store(tmp_path: Path) -> ThreadCountingFileStore:
    if not cachedio._available:
        pytest.skip("this kernel cannot answer reads from its caches only (Linux >= 5.12)")
    store = ThreadCountingFileStore(tmp_path / "sessions", durable=False)
    store.save(KEY, PAYLOAD, expires_at=time.time() + 3600)
    return store


def evict(path: str) -> None:
    """Drop the file's pages from the page cache, and check that they are gone.

    A `RWF_NOWAIT` read that misses makes the kernel start reading the file ahead, so
    the check itself brings the pages back a moment later: wait for that, then drop them
    again, with nothing left in flight.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # only clean pages can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(16)], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            pass
        else:
            pytest.skip("this file system keeps the file cached (tmpfs?): no fallback")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the readahead the miss started
            try:
                os.preadv(fd, [bytearray(16)], 0, os.RWF_NOWAIT)
                break
            except BlockingIOError:
                time.sleep(0.005)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


async def test_a_cached_record_is_read_on_the_event_loop(store: ThreadCountingFileStore) -> None:
    assert store.load(KEY) is not None  # in the caches now
    store.blocking_loads = 0
    record = await store.aload(KEY)
    assert record is not None and record.payload == PAYLOAD
    assert store.blocking_loads == 0


async def test_a_record_not_in_the_page_cache_is_read_in_a_thread(
    store: ThreadCountingFileStore,
) -> None:
    evict(store._locate(KEY)[1])
    store.blocking_loads = 0
    record = await store.aload(KEY)
    assert record is not None and record.payload == PAYLOAD
    assert store.blocking_loads == 1
    # That read brought it back into the cache: the next one stays on the loop.
    assert await store.aload(KEY) == record
    assert store.blocking_loads == 1


async def test_the_fallback_gives_what_load_gives_for_every_odd_case(
    store: ThreadCountingFileStore, tmp_path: Path
) -> None:
    store.blocking_loads = 0
    assert await store.aload("b2" * 20) is None  # no such record
    small = ThreadCountingFileStore(tmp_path / "small", max_record_size=1024)
    small.save(KEY, PAYLOAD[:100], expires_at=time.time() + 3600)
    os.truncate(small._locate(KEY)[1], 0)
    with open(small._locate(KEY)[1], "wb") as file:
        file.write(b"y" * 2048)  # over max_record_size: judged, never read
    oversized = await small.aload(KEY)
    assert oversized is not None and oversized.damage is not None
    assert oversized.damage.reason == CorruptReason.OVERSIZED
    assert small.blocking_loads == 1


async def test_an_expired_record_is_none_on_the_loop_too(tmp_path: Path) -> None:
    if not cachedio._available:
        pytest.skip("no cached reads on this kernel")
    now = [time.time()]
    store = ThreadCountingFileStore(tmp_path / "s", durable=False, clock=lambda: now[0])
    store.save(KEY, PAYLOAD, expires_at=now[0] + 10)
    assert await store.aload(KEY) is not None
    now[0] += 11
    assert await store.aload(KEY) is None
    assert store.blocking_loads == 0


async def test_without_cached_reads_every_aload_uses_the_thread(
    store: ThreadCountingFileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older kernel or another OS: `open_cached` can never answer.
    monkeypatch.setattr(cachedio, "_available", False)
    store.blocking_loads = 0
    record = await store.aload(KEY)
    assert record is not None and record.payload == PAYLOAD
    assert store.blocking_loads == 1
