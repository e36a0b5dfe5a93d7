"""`FileStore` beyond the contract: the write path, faults at each of its steps, locking,
purging and the thread pool behind the async methods.

Faults are injected at the `os` boundary only, and only for the one call they target
(the temp file's descriptor or path, the directory's descriptor); every other call goes
to the real function, on real files under `tmp_path`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from sessionguard.errors import ConfigurationError, StoreUnavailableError
from sessionguard.stores import FileStore, Record
from tests.clock import FakeClock
from tests.record_files import deadline_of, framed, lock_path, payload_of, record_path
from tests.trees import Tree, temp_files, tree

KEY = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
OLD = b"old \x00 record " * 40
NEW = bytes(range(256)) * 4
WAIT = 10.0  # upper bound on any wait for another thread; reached only when a test fails
REAL_FLOCK = fcntl.flock


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def store(directory: Path, clock: FakeClock) -> Iterator[FileStore]:
    opened = FileStore(directory, clock=clock)
    yield opened
    opened.close()


# -- the write path ----------------------------------------------------------------------


def test_save_renames_a_complete_temp_file_from_the_same_directory(
    store: FileStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    renames: list[tuple[str, str, bytes]] = []

    def replace(src: str, dst: str) -> None:
        renames.append((src, dst, Path(src).read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    store.save(KEY, NEW, expires_at=clock.now + 60)

    path = record_path(store, KEY)
    complete = framed(NEW, clock.now + 60)
    assert renames == [(str(path.parent / f".{KEY}.tmp"), str(path), complete)]
    assert path.read_bytes() == complete
    assert deadline_of(path) == clock.now + 60
    assert not (path.parent / f".{KEY}.tmp").exists()


def test_fan_out_directories_are_created_by_the_first_save_in_them(
    store: FileStore, clock: FakeClock, directory: Path
) -> None:
    assert os.listdir(directory) == [".locks"]

    store.save(KEY, NEW, expires_at=clock.now + 60)

    path = record_path(store, KEY)
    (top,) = path.parent.relative_to(directory).parts
    assert len(top) == 2 and set(top) <= set("0123456789abcdef")
    assert sorted(os.listdir(directory)) == [".locks", top]
    assert os.listdir(path.parent) == [KEY]


def test_a_flood_of_new_sessions_costs_one_inode_each_beyond_256_directories(
    directory: Path, clock: FakeClock
) -> None:
    """An anonymous client that writes to its session creates one record; the fan-out
    adds at most 256 directories in all, not two per record (issue 10, finding 8)."""
    store = FileStore(directory, durable=False, clock=clock)
    sessions = 3000
    for n in range(sessions):
        store.save(f"anonymous-{n:05d}", b"x", expires_at=clock.now + 60)

    walked = list(os.walk(directory))
    directories = len(walked) - 2  # not the store directory itself, nor .locks
    files = sum(len(names) for parent, _, names in walked if not parent.endswith(".locks"))
    assert files == sessions
    assert directories <= 256


def test_lock_files_stay_a_bounded_set_and_no_temp_file_remains(
    directory: Path,
    clock: FakeClock,
) -> None:
    stripes = 16
    store = FileStore(directory, durable=False, stripes=stripes, clock=clock)
    for n in range(2000):
        assert store.save(f"key-{n}", b"x%d" % n, expires_at=clock.now + 60) is not None
    for n in range(0, 2000, 2):
        assert store.delete(f"key-{n}")

    locks = os.listdir(directory / ".locks")
    assert len(locks) <= stripes
    assert set(locks) <= {f"{stripe:02x}" for stripe in range(stripes)}
    assert temp_files(directory) == []
    record = store.load("key-1999")
    assert record is not None and record.payload == b"x1999"


def test_missing_directory_with_create_false_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"

    with pytest.raises(ConfigurationError, match=re.escape(repr(str(missing)))) as caught:
        FileStore(missing, create=False)

    assert "create=True" in str(caught.value)
    assert not missing.exists()


# -- faults at each step of the write path -------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One OS call of `FileStore._write` and how to fail it."""

    function: Literal["open", "write", "fsync", "close", "replace"]
    target: Literal["temp", "directory"]
    errno: int
    #: What the message must say was being done.
    doing: str
    #: Write only part of the buffer on the first call, then fail.
    short_first: bool = False
    #: Let the real call run before failing (close(2) releases the descriptor on error).
    call_through: bool = False

    @property
    def renamed(self) -> bool:
        """Whether the fault comes after `os.replace`, so the new record is in place."""
        return self.target == "directory"


STEPS = {
    "open-temp-enospc": Step("open", "temp", errno.ENOSPC, "could not create"),
    "write-enospc": Step("write", "temp", errno.ENOSPC, "could not write"),
    "write-eio": Step("write", "temp", errno.EIO, "could not write"),
    "short-write-then-enospc": Step(
        "write", "temp", errno.ENOSPC, "could not write", short_first=True
    ),
    "fsync-eio": Step("fsync", "temp", errno.EIO, "could not write"),
    # Delayed allocation: a full disk may surface only at fsync.
    "fsync-enospc": Step("fsync", "temp", errno.ENOSPC, "could not write"),
    "close-eio": Step("close", "temp", errno.EIO, "could not write", call_through=True),
    "replace-enospc": Step("replace", "temp", errno.ENOSPC, "could not rename"),
    "replace-eio": Step("replace", "temp", errno.EIO, "could not rename"),
    "open-directory-eio": Step("open", "directory", errno.EIO, "could not sync directory"),
    "fsync-directory-eio": Step("fsync", "directory", errno.EIO, "could not sync directory"),
}


class FaultInjector:
    """Wraps `os.open/write/fsync/close/replace`: while armed, fails `step` for the
    matching call only. It follows which descriptors belong to a temp file or directory by
    watching `os.open` and `os.close`, so the fault hits that one call and nothing else."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, step: Step) -> None:
        self.step = step
        self.armed = False
        self.hits = 0
        self.temp_fds: set[int] = set()
        self.dir_fds: set[int] = set()
        self.real: dict[str, Callable[..., Any]] = {}
        for name in ("open", "write", "fsync", "close", "replace"):
            self.real[name] = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(name))

    def _targets(self, name: str, args: tuple[Any, ...]) -> bool:
        first = args[0]
        if name == "open":
            is_dir = bool(args[1] & os.O_DIRECTORY)
            return is_dir if self.step.target == "directory" else str(first).endswith(".tmp")
        if name == "replace":
            return str(first).endswith(".tmp")
        fds = self.dir_fds if self.step.target == "directory" else self.temp_fds
        return isinstance(first, int) and first in fds

    def _wrap(self, name: str) -> Callable[..., Any]:
        real = self.real[name]

        def call(*args: Any, **kwargs: Any) -> Any:
            targeted = name == self.step.function and self._targets(name, args)
            if name == "close":  # the number may be reused by the next open
                self.temp_fds.discard(args[0])
                self.dir_fds.discard(args[0])
            if self.armed and targeted:
                self.hits += 1
                if self.step.short_first and self.hits == 1:
                    return real(args[0], args[1][: len(args[1]) // 2])
                if self.step.call_through:
                    real(*args, **kwargs)
                raise OSError(self.step.errno, os.strerror(self.step.errno))
            result = real(*args, **kwargs)
            if name == "open":
                if str(args[0]).endswith(".tmp"):
                    self.temp_fds.add(result)
                if args[1] & os.O_DIRECTORY:
                    self.dir_fds.add(result)
            return result

        return call


async def save_via(
    mode: str, store: FileStore, key: str, payload: bytes, expires_at: float
) -> None:
    if mode == "sync":
        store.save(key, payload, expires_at=expires_at)
    else:
        await store.asave(key, payload, expires_at=expires_at)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
async def test_fault_at_each_write_step_raises_unavailable_and_keeps_the_old_record(
    store: FileStore,
    clock: FakeClock,
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: Step,
    mode: str,
) -> None:
    old_version = store.save(KEY, OLD, expires_at=clock.now + 60)
    assert old_version is not None
    path = record_path(store, KEY)
    faults = FaultInjector(monkeypatch, step)

    faults.armed = True
    with pytest.raises(StoreUnavailableError) as caught:
        await save_via(mode, store, KEY, NEW, clock.now + 120)
    faults.armed = False

    assert faults.hits >= (2 if step.short_first else 1), "the fault was never reached"
    message = str(caught.value)
    assert step.doing in message
    assert os.strerror(step.errno) in message
    assert "Check free space, permissions" in message and repr(str(directory)) in message
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == step.errno
    assert temp_files(directory) == []
    if step.renamed:
        # The fault came after os.replace: the new record is already in place, complete,
        # and the message must not claim the old data was kept.
        assert "may not survive a power cut" in message
        record = store.load(KEY)
        assert record is not None and (record.payload, record.expires_at) == (NEW, clock.now + 120)
        assert payload_of(path) == NEW
    else:
        assert "left as it was" in message
        assert store.load(KEY) == Record(OLD, old_version, clock.now + 60)
        assert payload_of(path) == OLD
    # Nothing is left behind that blocks the next write: no held lock, no stale temp file.
    await save_via(mode, store, KEY, b"after", clock.now + 60)
    assert payload_of(path) == b"after"


def test_temp_file_that_cannot_be_removed_after_a_fault_is_left_for_the_next_write(
    store: FileStore,
    clock: FakeClock,
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store.save(KEY, OLD, expires_at=clock.now + 60)
    faults = FaultInjector(monkeypatch, STEPS["write-enospc"])
    real_unlink = os.unlink

    def unlink(path: str) -> None:
        if path.endswith(".tmp"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink)
    faults.armed = True
    # The write's own error is reported, not the failed clean-up.
    with pytest.raises(StoreUnavailableError, match="No space left on device"):
        store.save(KEY, NEW, expires_at=clock.now + 120)
    faults.armed = False
    monkeypatch.setattr(os, "unlink", real_unlink)
    assert len(temp_files(directory)) == 1
    assert payload_of(record_path(store, KEY)) == OLD

    store.save(KEY, NEW, expires_at=clock.now + 120)  # removes the orphan and writes anew

    assert temp_files(directory) == []
    assert payload_of(record_path(store, KEY)) == NEW


def test_permission_denied_on_the_directory_is_unavailable_not_a_miss(
    store: FileStore, clock: FakeClock, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(KEY, OLD, expires_at=clock.now + 60)
    real_open = os.open

    def open_denied(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(directory)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_denied)
    with pytest.raises(StoreUnavailableError, match="Permission denied"):
        store.save(KEY, NEW, expires_at=clock.now + 60)
    with pytest.raises(StoreUnavailableError, match="Permission denied"):
        store.load(KEY)
    monkeypatch.undo()

    assert payload_of(record_path(store, KEY)) == OLD


# -- locking -------------------------------------------------------------------------------


@pytest.fixture
def flock_waiters(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set as soon as any thread asks `fcntl.flock` for an exclusive lock."""
    asked = threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_EX:
            asked.set()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    return asked


@contextlib.contextmanager
def holding_lock(path: Path) -> Iterator[None]:
    """Hold a stripe lock as another writer (thread or process) would; release on exit."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        REAL_FLOCK(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def finishes_within(future: concurrent.futures.Future[Any], seconds: float) -> bool:
    done, _ = concurrent.futures.wait([future], timeout=seconds)
    return bool(done)


def test_load_takes_no_lock_and_save_waits_for_the_stripe_lock(
    store: FileStore, clock: FakeClock, flock_waiters: threading.Event
) -> None:
    store.save(KEY, OLD, expires_at=clock.now + 60)
    flock_waiters.clear()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        with holding_lock(lock_path(store, KEY)):
            loaded = pool.submit(store.load, KEY).result(timeout=WAIT)
            assert not flock_waiters.is_set(), "load asked for a lock"
            assert loaded is not None and loaded.payload == OLD

            saving = pool.submit(store.save, KEY, NEW, expires_at=clock.now + 60)
            assert flock_waiters.wait(WAIT)
            assert not finishes_within(saving, 0.1), "save did not wait for the lock"
            assert payload_of(record_path(store, KEY)) == OLD
        assert saving.result(timeout=WAIT) is not None
    finally:
        pool.shutdown(wait=True)
    assert payload_of(record_path(store, KEY)) == NEW


# -- purge_expired -------------------------------------------------------------------------


def test_purge_removes_orphaned_temp_files_and_keeps_live_records(
    store: FileStore,
    clock: FakeClock,
    directory: Path,
) -> None:
    version = store.save(KEY, OLD, expires_at=clock.now + 60)
    assert version is not None
    beside_record = record_path(store, KEY).parent / f".{KEY}.tmp"
    beside_record.write_bytes(NEW[:100])  # a writer killed mid-write
    alone = record_path(store, OTHER).parent / f".{OTHER}.tmp"
    alone.parent.mkdir(parents=True, exist_ok=True)
    alone.write_bytes(b"")  # killed right after creating its temp file

    assert store.purge_expired() == 0  # temp files are not records: not counted

    assert temp_files(directory) == []
    assert store.load(KEY) == Record(OLD, version, clock.now + 60)


def test_purge_does_not_remove_a_temp_file_while_its_writer_holds_the_lock(
    store: FileStore, clock: FakeClock, flock_waiters: threading.Event
) -> None:
    path = record_path(store, KEY)
    path.parent.mkdir(parents=True)
    temp = path.parent / f".{KEY}.tmp"
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        with holding_lock(lock_path(store, KEY)):  # this test is the writer
            temp.write_bytes(framed(NEW, clock.now + 60))
            purging = pool.submit(store.purge_expired)
            assert flock_waiters.wait(WAIT)
            assert not finishes_within(purging, 0.1), "purge did not wait for the writer"
            os.replace(temp, path)  # FileNotFoundError here if purge took the temp file
        assert purging.result(timeout=WAIT) == 0
    finally:
        pool.shutdown(wait=True)
    record = store.load(KEY)
    assert record is not None and (record.payload, record.expires_at) == (NEW, clock.now + 60)


def test_purge_keeps_a_record_touched_before_it_ran(store: FileStore, clock: FakeClock) -> None:
    store.save(KEY, OLD, expires_at=clock.now + 10)
    store.save(OTHER, NEW, expires_at=clock.now + 10)
    clock.advance(5)
    assert store.touch(KEY, clock.now + 100)
    clock.advance(10)  # past the first deadline of both

    assert store.purge_expired() == 1

    record = store.load(KEY)
    assert record is not None and record.payload == OLD
    assert not record_path(store, OTHER).exists()


def test_purge_keeps_a_record_rewritten_after_it_listed_the_directory(
    store: FileStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(KEY, OLD, expires_at=clock.now + 10)
    clock.advance(20)  # expired: a purge candidate when listed
    real_scandir = os.scandir
    rewrites: list[int | None] = []
    listing = str(record_path(store, KEY).parent)

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        entries = list(real_scandir(path))
        if not rewrites and os.fspath(path) == listing:
            # A concurrent request saves the session right after its directory was listed.
            rewrites.append(store.save(KEY, NEW, expires_at=clock.now + 60))
        return iter(entries)

    monkeypatch.setattr(os, "scandir", scandir)

    assert store.purge_expired() == 0
    assert rewrites and rewrites[0] is not None
    record = store.load(KEY)
    assert record is not None and record.payload == NEW


def test_purge_leaves_files_that_are_not_records_alone(
    store: FileStore, clock: FakeClock, directory: Path
) -> None:
    store.save(KEY, OLD, expires_at=clock.now + 10)
    fan_out = record_path(store, KEY).parent
    misplaced = next(
        name
        for name in ("Makefile", "LICENSE", "notes")
        if record_path(store, name).parent != fan_out
    )
    unknown = [
        directory / "README.txt",
        directory / "quarantine" / KEY,  # a valid key name, outside the fan-out tree
        directory / "quarantine" / "2024" / "01",
        directory / "0f",  # a file named like a fan-out directory
        fan_out.parent / "stray.txt",
        fan_out.parent / "0e",
        fan_out / "notes.txt",
        fan_out / ".DS_Store",
        fan_out / ".notes.txt.tmp",  # an editor's temp file, not ours
        fan_out / misplaced,  # a valid key name in a directory it does not hash to
    ]
    for path in unknown:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a session: " + path.name.encode())
        os.utime(path, (0, 1000))  # long "expired", were it a record
    clock.advance(20)

    def ours(root: Path) -> Tree:
        return {k: v for k, v in tree(root).items() if not k.startswith(".locks")}

    before = ours(directory)
    assert store.purge_expired() == 1

    del before[str(record_path(store, KEY).relative_to(directory))]
    assert ours(directory) == before


# -- the thread pool behind the async methods --------------------------------------------


async def test_async_save_runs_in_a_worker_thread_and_leaves_the_loop_free(
    store: FileStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(OTHER, OLD, expires_at=clock.now + 60)
    entered, release = threading.Event(), threading.Event()
    fsync_threads: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsync_threads.append(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            # Never block the loop's own thread, so that a store running the save inline
            # fails the assertions below instead of hanging the test.
            entered.set()
            release.wait(WAIT)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    saving = asyncio.create_task(store.asave(KEY, NEW, expires_at=clock.now + 60))
    try:
        assert await asyncio.to_thread(entered.wait, WAIT)
        # The save is stuck in fsync; the loop still runs other coroutines, reads included.
        other = await asyncio.wait_for(store.aload(OTHER), WAIT)
        ticks = 0
        for _ in range(3):
            await asyncio.sleep(0)
            ticks += 1
        assert not saving.done()
    finally:
        release.set()

    assert await asyncio.wait_for(saving, WAIT) is not None
    assert other is not None and other.payload == OLD and ticks == 3
    main = threading.main_thread().name
    assert fsync_threads and all(name != main for name in fsync_threads)


async def test_max_threads_bounds_concurrent_blocking_calls(
    directory: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_threads = 3
    store = FileStore(directory, max_threads=max_threads, clock=clock)
    keys: dict[int, str] = {}  # one key per stripe, so that no save waits for a lock
    for n in range(10_000):
        if len(keys) == 4 * max_threads:
            break
        keys.setdefault(store._locate(f"key-{n}")[2], f"key-{n}")
    guard = threading.Lock()
    active = peak = 0
    threads: set[int] = set()
    full, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
            threads.add(threading.get_ident())
            if active >= max_threads:
                full.set()
        try:
            if threading.current_thread() is not threading.main_thread():
                release.wait(WAIT)  # see above: the loop's thread is never blocked
            real_fsync(fd)
        finally:
            with guard:
                active -= 1

    monkeypatch.setattr(os, "fsync", fsync)
    saves = asyncio.gather(
        *(store.asave(key, NEW, expires_at=clock.now + 60) for key in keys.values())
    )
    try:
        assert await asyncio.to_thread(full.wait, WAIT)
    finally:
        release.set()
        versions = await asyncio.wait_for(saves, 3 * WAIT)
        store.close()

    assert peak == max_threads
    assert len(threads) <= max_threads
    assert len(versions) == 4 * max_threads and None not in versions
