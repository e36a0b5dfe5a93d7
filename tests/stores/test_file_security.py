"""`FileStore` in a directory a hostile local user (or a stray script) has planted files in.

Everything is real: directories made with real modes and owners (giving one to another
uid needs root, which the suite runs as), symbolic links, FIFOs and sockets made at the
names the store uses, a sparse file past the size limit. A call that the old code would
block in (a FIFO) or never finish (reading /dev/zero) runs through `within_time`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.test import Client

from sessionguard import wsgi
from sessionguard.errors import ConfigurationError, CorruptReason, StoreUnavailableError
from sessionguard.policy import CorruptionPolicy
from sessionguard.stores import FileStore
from sessionguard.stores.base import Write, key_hash
from sessionguard.stores.filelayout import old_path as _old_path
from tests.clock import FakeClock
from tests.planted import KINDS, SECRET, Kind, mode_of, plant, secret_file, umask, within_time
from tests.record_files import framed, lock_path, record_path
from tests.trees import tree

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

KEY = "0123456789abcdef0123456789abcdef01234567"
RAW_ID = re.compile(r"[0-9a-f]{40}")
OTHER_UID = 4321
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give away a directory")


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Where planted links point: anywhere but the store."""
    path = tmp_path / "outside"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def store(directory: Path, clock: FakeClock) -> Iterator[FileStore]:
    opened = FileStore(directory, clock=clock)
    yield opened
    opened.close()


def old_record_path(store: FileStore, key: str = KEY) -> Path:
    """Where stores before 0.2 kept the record: two fan-out levels deep (still read)."""
    return Path(_old_path(store.directory, key))


# -- the directories ---------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o277], ids=["umask-000", "umask-277"])
def test_every_directory_the_store_creates_is_0700_whatever_the_umask(
    tmp_path: Path, clock: FakeClock, mask: int
) -> None:
    root = tmp_path / "srv" / "app" / "sessions"
    with umask(mask):
        store = FileStore(root, clock=clock)
        store.save(KEY, b"data", expires_at=clock.now + 60)
    parent = record_path(store, KEY).parent

    created = [tmp_path / "srv", tmp_path / "srv" / "app", root, root / ".locks"]
    created += [parent.parent, parent]
    assert {str(path): oct(mode_of(path)) for path in created} == {
        str(path): oct(0o700) for path in created
    }


@pytest.mark.parametrize(
    ("mode", "fix"),
    [
        (0o770, "chmod 700"),
        (0o707, "chmod 700"),
        (0o777, "chmod 700"),
        (0o1777, "a directory of its own"),  # a shared directory such as /tmp
    ],
    ids=["group-writable", "other-writable", "world-writable", "sticky-like-tmp"],
)
def test_a_store_directory_others_can_write_to_is_refused_with_the_fix(
    directory: Path, mode: int, fix: str
) -> None:
    directory.mkdir()
    directory.chmod(mode)

    with pytest.raises(ConfigurationError) as caught:
        FileStore(directory)

    message = str(caught.value)
    assert repr(str(directory)) in message
    assert f"mode {mode:04o}" in message
    assert fix in message
    assert os.listdir(directory) == []  # not even .locks was made in it


@as_root
def test_a_store_directory_owned_by_another_user_is_refused_with_the_fix(
    directory: Path,
) -> None:
    directory.mkdir(mode=0o700)
    os.chown(directory, OTHER_UID, -1)

    with pytest.raises(ConfigurationError) as caught:
        FileStore(directory)

    message = str(caught.value)
    assert repr(str(directory)) in message
    assert f"owned by uid {OTHER_UID}" in message
    assert f"chown -R {os.geteuid()} " in message


@pytest.mark.parametrize("problem", ["link", "group-writable", "other-owner"])
def test_a_lock_directory_that_is_a_link_or_not_ours_alone_is_refused(
    directory: Path, outside: Path, problem: str
) -> None:
    locks = directory / ".locks"
    directory.mkdir(mode=0o700)
    if problem == "link":
        locks.symlink_to(outside, target_is_directory=True)
    else:
        locks.mkdir(mode=0o700)
        if problem == "group-writable":
            locks.chmod(0o770)
        elif os.geteuid() == 0:
            os.chown(locks, OTHER_UID, -1)
        else:
            pytest.skip("only root can give away a directory")

    with pytest.raises(ConfigurationError, match=re.escape(repr(str(locks)))) as caught:
        FileStore(directory)

    expected = {"link": "is a symbolic link", "group-writable": "mode 0770"}
    assert expected.get(problem, f"owned by uid {OTHER_UID}") in str(caught.value)
    assert os.listdir(outside) == []


def test_the_store_directory_may_be_a_link_the_operator_made_judged_by_its_target(
    tmp_path: Path, clock: FakeClock
) -> None:
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir(mode=0o700)
    link.symlink_to(real, target_is_directory=True)

    store = FileStore(link, clock=clock)
    version = store.save(KEY, b"data", expires_at=clock.now + 60)
    record = store.load(KEY)
    assert record is not None and record.version == version
    assert (real / record_path(store, KEY).relative_to(link)).is_file()

    real.chmod(0o777)
    with pytest.raises(ConfigurationError, match="writable by group or others"):
        FileStore(link)


@pytest.mark.parametrize("level", ["top", "second"])
def test_a_symlinked_fan_out_directory_is_refused_and_nothing_outside_is_written(
    store: FileStore, clock: FakeClock, outside: Path, level: str
) -> None:
    parent = record_path(store, KEY).parent
    if level == "top":
        link = parent
    else:  # the second level of the layout before 0.2, which is still read
        parent.mkdir(mode=0o700)
        link = old_record_path(store, KEY).parent
    link.symlink_to(outside, target_is_directory=True)

    calls: list[Callable[[], object]] = [
        lambda: store.save(KEY, b"data", expires_at=clock.now + 60),
        lambda: store.load(KEY),
        lambda: store.delete(KEY),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailableError) as caught:
            call()
        assert f"{str(link)!r}: it is a symbolic link" in str(caught.value)
        assert "rm " in str(caught.value)
    assert tree(outside) == {}
    assert link.is_symlink()  # reported, not removed: the operator decides


@pytest.mark.parametrize("problem", ["group-writable", "other-owner"])
def test_a_fan_out_directory_not_ours_alone_is_refused_with_the_fix(
    store: FileStore, clock: FakeClock, problem: str
) -> None:
    parent = record_path(store, KEY).parent
    parent.mkdir(parents=True, mode=0o700)
    if problem == "group-writable":
        parent.chmod(0o775)
        expected = ("mode 0775", f"chmod -R go-w {store.directory}")
    elif os.geteuid() == 0:
        os.chown(parent, OTHER_UID, -1)
        expected = (f"owned by uid {OTHER_UID}", f"chown -R {os.geteuid()} {store.directory}")
    else:
        pytest.skip("only root can give away a directory")

    with pytest.raises(StoreUnavailableError) as caught:
        store.save(KEY, b"data", expires_at=clock.now + 60)

    assert repr(str(parent)) in str(caught.value)
    assert all(part in str(caught.value) for part in expected)
    assert os.listdir(parent) == []


def test_each_fan_out_directory_is_checked_once_per_store(
    directory: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    FileStore(directory).save(KEY, b"data", expires_at=clock.now + 60)  # another process
    store = FileStore(directory, clock=clock)
    parent = record_path(store, KEY).parent
    checked: list[str] = []
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.fspath(path).startswith(str(parent)):
            checked.append(os.fspath(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    for n in range(10):
        store.save(KEY, b"data %d" % n, expires_at=clock.now + 60)
        assert store.load(KEY) is not None

    assert checked == [str(parent)]


# -- no link is followed ----------------------------------------------------------------


@pytest.mark.parametrize("planted", ["link_to_file", "dangling_link", "fifo", "stale_file"])
def test_whatever_is_at_the_temp_file_name_is_removed_and_never_written_through(
    store: FileStore, clock: FakeClock, outside: Path, planted: str
) -> None:
    store.save(KEY, b"old", expires_at=clock.now + 60)
    temp = record_path(store, KEY).with_name(f".{KEY}.tmp")
    secret = secret_file(outside)
    if planted == "link_to_file":
        temp.symlink_to(secret)
    elif planted == "dangling_link":
        temp.symlink_to(outside / "created-by-the-store")
    elif planted == "fifo":
        os.mkfifo(temp, 0o600)  # opening it for writing would wait for a reader forever
    else:
        temp.write_bytes(b"half a record")  # a killed writer's leftover

    within_time(lambda: store.save(KEY, b"new", expires_at=clock.now + 60))

    record = store.load(KEY)
    assert record is not None and record.payload == b"new"
    assert not os.path.lexists(temp)
    assert stat.S_ISREG(os.lstat(record_path(store, KEY)).st_mode)
    assert tree(outside) == {"shadow": SECRET}
    assert mode_of(secret) == 0o600


@pytest.mark.parametrize("target", ["dangling", "existing"])
def test_a_planted_lock_file_link_is_refused_and_nothing_outside_is_opened(
    store: FileStore, clock: FakeClock, outside: Path, target: str
) -> None:
    lock = lock_path(store, KEY)
    pointed = outside / "lock" if target == "dangling" else secret_file(outside)
    lock.symlink_to(pointed)
    before = tree(outside)

    calls: list[Callable[[], object]] = [
        lambda: store.save(KEY, b"data", expires_at=clock.now + 60),
        lambda: store.update(KEY, lambda record: Write(b"data", clock.now + 60)),
        lambda: store.delete(KEY),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailableError) as caught:
            call()
        message = str(caught.value)
        assert repr(str(lock)) in message and "where its lock file should be" in message
        assert not RAW_ID.search(message)

    assert tree(outside) == before
    assert lock.is_symlink()
    assert not record_path(store, KEY).exists()


@pytest.mark.parametrize("level", ["top", "second"])
def test_purge_scan_and_leftover_temp_files_never_descend_into_a_symlinked_fan_out_dir(
    store: FileStore, clock: FakeClock, outside: Path, level: str
) -> None:
    parent = record_path(store, KEY).parent
    # Outside, a tree that looks like the store's: an expired record and a temp file.
    mirror = outside
    (mirror / KEY).write_bytes(framed(b"not the store's", clock.now - 3600))
    (mirror / f".{KEY}.tmp").write_bytes(b"not the store's either")
    if level == "top":
        parent.symlink_to(outside, target_is_directory=True)
    else:  # the second level of the layout before 0.2
        parent.mkdir(mode=0o700)
        old_record_path(store, KEY).parent.symlink_to(outside, target_is_directory=True)
    before = tree(outside)

    assert list(store.scan()) == []
    assert store.leftover_temp_files() == []
    assert store.purge_expired() == 0

    assert tree(outside) == before


# -- only regular files are read, and only so much ---------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_anything_but_a_regular_file_at_a_record_name_is_damaged_and_never_read(
    store: FileStore, clock: FakeClock, outside: Path, kind: Kind
) -> None:
    path = record_path(store, KEY)
    path.parent.mkdir(parents=True, mode=0o700)
    plant(kind, path, outside)
    before = tree(outside)

    record = within_time(lambda: store.load(KEY))
    assert record is not None and record.damage is not None
    assert record.damage.reason is CorruptReason.NOT_A_FILE
    assert record.payload == b""
    assert KEY not in str(record.damage) and str(outside) not in str(record.damage)
    [found] = within_time(lambda: list(store.scan()))
    assert (found.key, found.record.version, found.record.payload) == (KEY, record.version, b"")
    assert found.record.damage is not None and found.record.damage.reason == "not_a_file"
    assert within_time(store.purge_expired) == 0  # corrupt is never expired
    assert os.path.lexists(path)
    assert not store.touch(KEY, clock.now + 60)

    # What the corruption policy and `purge --corrupt` do: remove it by its version.
    assert within_time(lambda: store.delete(KEY, expected_version=record.version))
    assert not os.path.lexists(path)
    assert tree(outside) == before


def test_a_delete_by_version_misses_when_the_name_was_given_to_another_file(
    store: FileStore, outside: Path
) -> None:
    path = record_path(store, KEY)
    path.parent.mkdir(parents=True, mode=0o700)
    os.mkfifo(path)
    seen = within_time(lambda: store.load(KEY))
    assert seen is not None
    path.unlink()
    path.symlink_to(secret_file(outside))

    assert not store.delete(KEY, expected_version=seen.version)
    assert path.is_symlink()


@pytest.mark.parametrize("over", [1, 1 << 30], ids=["one-byte-over", "a-GiB-over"])
def test_a_file_over_max_record_size_is_oversized_and_never_read(
    store: FileStore, clock: FakeClock, over: int
) -> None:
    path = record_path(store, KEY)
    path.parent.mkdir(parents=True, mode=0o700)
    with open(path, "wb") as file:  # sparse: nothing of it is on disk
        file.truncate(store.max_record_size + over)

    record = within_time(lambda: store.load(KEY))

    assert record is not None and record.damage is not None
    assert record.damage.reason is CorruptReason.OVERSIZED
    assert record.payload == b""
    assert f"{store.max_record_size + over} bytes" in record.damage.detail
    assert f"max_record_size={1 << 20}" in record.damage.detail
    assert store.delete(KEY, expected_version=record.version)
    assert not path.exists()


def test_max_record_size_bounds_what_is_read_and_what_is_written(
    directory: Path, clock: FakeClock
) -> None:
    store = FileStore(directory, max_record_size=1024, clock=clock)
    path = record_path(store, KEY)
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_bytes(framed(b"x" * (1024 - 32), clock.now + 60))  # exactly the limit
    at_limit = store.load(KEY)
    assert at_limit is not None and at_limit.damage is None
    assert at_limit.payload == b"x" * (1024 - 32)

    with pytest.raises(StoreUnavailableError) as caught:
        store.save(KEY, b"y" * (1024 - 31), expires_at=clock.now + 60)

    assert "1025 bytes, more than max_record_size=1024" in str(caught.value)
    assert not RAW_ID.search(str(caught.value))
    assert store.load(KEY) == at_limit
    assert os.listdir(path.parent) == [KEY]


@pytest.mark.parametrize("value", [0, 31, -1, True, 1.5, "1M"])
def test_max_record_size_must_be_a_number_of_bytes_a_header_fits_in(
    directory: Path, value: Any
) -> None:
    with pytest.raises(ConfigurationError, match="max_record_size"):
        FileStore(directory, max_record_size=value)


# -- through the middleware: a planted link reaches the corruption policy ---------------


def test_a_link_to_a_secret_at_a_session_record_is_quarantined_empty_and_only_unlinked(
    tmp_path: Path, outside: Path
) -> None:
    quarantine = tmp_path / "quarantine" / "sessions"

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        session = environ[wsgi.ENVIRON_KEY]
        session["visits"] = session.get("visits", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(session["visits"]).encode()]

    with umask(0):
        store = FileStore(tmp_path / "sessions")
        policy = CorruptionPolicy(quarantine_dir=quarantine)
        client = Client(
            wsgi.SessionMiddleware(app, "secret-key-for-tests", store=store, policy=policy)
        )
        assert client.get("/").text == "1"
        [(key, path)] = [(found.key, record_path(store, found.key)) for found in store.scan()]
        path.unlink()
        path.symlink_to(secret_file(outside))

        assert client.get("/").text == "1"  # a fresh session: the planted record was corrupt

    [copy] = quarantine.iterdir()
    assert copy.name.startswith(f"{key_hash(key)}-not_a_file-")
    assert copy.read_bytes() == b""
    assert mode_of(quarantine) == mode_of(quarantine.parent) == 0o700
    assert not os.path.lexists(path)
    assert tree(outside) == {"shadow": SECRET}


# -- no raw session id in any message ----------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Fail the first call of `module.function` on one target with `errno`."""

    module: ModuleType
    function: str
    target: str  # "record", "temp", "lock", "parent" or "top"
    errno: int
    #: What the test directory holds before the store (a fresh one) is called.
    setup: str = "live"  # "live", "expired", "stale_temp" or "none"


def targets(store: FileStore) -> dict[str, str]:
    parent, path, _ = store._locate(KEY)
    return {
        "record": path,
        "temp": os.path.join(parent, f".{KEY}.tmp"),
        "lock": str(lock_path(store, KEY)),
        "parent": parent,
        "top": os.path.dirname(parent),
    }


OPERATIONS: dict[str, Callable[[FileStore, float], object]] = {
    "load": lambda store, now: store.load(KEY),
    "save": lambda store, now: store.save(KEY, b"new", expires_at=now + 60),
    "update": lambda store, now: store.update(KEY, lambda record: Write(None)),
    "delete": lambda store, now: store.delete(KEY),
    "touch": lambda store, now: store.touch(KEY, now + 120),
    "purge": lambda store, now: store.purge_expired(),
    "scan": lambda store, now: list(store.scan()),
    "leftover": lambda store, now: store.leftover_temp_files(),
}

FAULTS = {
    "load-check-directory": ("load", Fault(os, "lstat", "parent", errno.EIO)),
    "load-open": ("load", Fault(os, "open", "record", errno.EACCES)),
    "load-fstat": ("load", Fault(os, "fstat", "record", errno.EIO)),
    "load-read": ("load", Fault(os, "read", "record", errno.EIO)),
    "save-make-directory": ("save", Fault(os, "mkdir", "parent", errno.ENOSPC, "none")),
    "save-lock-open": ("save", Fault(os, "open", "lock", errno.EACCES)),
    "save-flock": ("save", Fault(fcntl, "flock", "lock", errno.ENOLCK)),
    "save-remove-stale-temp": ("save", Fault(os, "unlink", "temp", errno.EACCES, "stale_temp")),
    "save-create-temp": ("save", Fault(os, "open", "temp", errno.ENOSPC)),
    "save-write": ("save", Fault(os, "write", "temp", errno.ENOSPC)),
    "save-fsync": ("save", Fault(os, "fsync", "temp", errno.EIO)),
    "save-rename": ("save", Fault(os, "replace", "temp", errno.EIO)),
    "save-sync-directory": ("save", Fault(os, "fsync", "parent", errno.EIO)),
    "update-delete": ("update", Fault(os, "unlink", "record", errno.EACCES)),
    "delete": ("delete", Fault(os, "unlink", "record", errno.EACCES)),
    "touch-write": ("touch", Fault(os, "write", "temp", errno.ENOSPC)),
    "purge-list": ("purge", Fault(os, "scandir", "parent", errno.EIO, "expired")),
    "purge-record": ("purge", Fault(os, "unlink", "record", errno.EACCES, "expired")),
    "purge-temp": ("purge", Fault(os, "unlink", "temp", errno.EACCES, "stale_temp")),
    "scan-read": ("scan", Fault(os, "read", "record", errno.EIO)),
    "leftover-lock": ("leftover", Fault(os, "open", "lock", errno.EIO, "stale_temp")),
}


class OneFault:
    """Fails `fault` once, at the `os` (or `fcntl`) boundary; every other call goes through.

    Descriptors are followed from `os.open` to `os.close`, so a fault on `read`, `write`,
    `fsync` or `flock` hits a descriptor of the target and nothing else.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fault: Fault, target: str) -> None:
        self.fault, self.target, self.hits = fault, target, 0
        self.paths: dict[int, str] = {}
        for module, name in {(os, "open"), (os, "close"), (fault.module, fault.function)}:
            monkeypatch.setattr(module, name, self._wrap(name, getattr(module, name)))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            first = args[0]
            subject = self.paths.get(first) if isinstance(first, int) else os.fspath(first)
            if name == "close":
                self.paths.pop(first, None)
            if not self.hits and name == self.fault.function and subject == self.target:
                self.hits += 1
                raise OSError(self.fault.errno, os.strerror(self.fault.errno))
            result = real(*args, **kwargs)
            if name == "open":
                self.paths[result] = os.fspath(first)
            return result

        return call


@pytest.mark.parametrize(("operation", "fault"), FAULTS.values(), ids=FAULTS.keys())
def test_no_store_error_names_a_session_by_its_id(
    directory: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    fault: Fault,
) -> None:
    planting = FileStore(directory, clock=clock)
    if fault.setup != "none":
        expired = fault.setup == "expired"
        planting.save(KEY, b"data", expires_at=clock.now + (-60 if expired else 60))
    if fault.setup == "stale_temp":
        Path(targets(planting)["temp"]).write_bytes(b"half")
    store = FileStore(directory, clock=clock)  # nothing checked or cached yet
    injected = OneFault(monkeypatch, fault, targets(store)[fault.target])

    with pytest.raises(StoreUnavailableError) as caught:
        OPERATIONS[operation](store, clock.now)

    monkeypatch.undo()
    assert injected.hits == 1, "the fault was never reached"
    message = str(caught.value)
    assert os.strerror(fault.errno) in message
    assert repr(str(directory)) in message
    assert not RAW_ID.search(message), message
    assert KEY not in message and KEY[:12] not in message
