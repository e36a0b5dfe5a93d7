"""`sessionguard purge`: expired records go in batches, corrupt ones only with `--corrupt`
(and only the exact record that was scanned), `--quarantine` copies before it deletes,
and one bad record never stops the run. Races with live writers: test_purge_race.py."""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import sessionguard.cli
from sessionguard.ops import key_hash
from sessionguard.stores import FileStore, Store
from sessionguard.stores.base import PurgeProgress, ScannableStore, StoredRecord

from .plant import NOW_OFFSET_LIVE, Planted, plant, valid_payload

if TYPE_CHECKING:
    from tests.cli.conftest import RunCLI, Target

REPO = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r"purge: removed (\d+) expired record\(s\)")


def expired_removed(stdout: str) -> int:
    found = SUMMARY.search(stdout)
    assert found is not None, stdout
    return int(found.group(1))


def assert_live_intact(store: Store, planted: Planted) -> None:
    for name, payload in planted.live.items():
        record = store.load(name)
        assert record is not None and record.payload == payload, name


def test_purge_removes_expired_records_and_leaves_live_and_corrupt_ones(
    target: Target, run: RunCLI, tmp_path: Path
) -> None:
    planted = plant(target.store, time.time(), str(tmp_path / "unpickled"))

    ran = run("purge", target.url, "--batch", "2")

    assert ran.status == 0, ran.stderr
    assert expired_removed(ran.stdout) == (0 if target.expires_by_itself else 5)
    assert ran.stdout.count("\n") == 1  # one summary line when not on a terminal
    assert_live_intact(target.store, planted)
    assert not [found for found in target.store_scan() if found.expired]
    for name, (_, payload) in planted.corrupt.items():
        record = target.store.load(name)
        assert record is not None and record.payload == payload, "corrupt removed without --corrupt"


def test_purge_corrupt_removes_every_corrupt_record_and_nothing_live(
    target: Target, run: RunCLI, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    planted = plant(target.store, time.time(), str(marker))

    ran = run("purge", target.url, "--corrupt")

    assert ran.status == 0, ran.stderr
    assert "and 6 corrupt record(s); 0 error(s)" in ran.stdout
    for name in planted.corrupt:
        assert target.store.load(name) is None, name
    assert_live_intact(target.store, planted)
    assert run("scan", target.url).status == 0
    assert not marker.exists(), "purge ran pickle on a planted record"


def test_purge_quarantine_copies_each_corrupt_record_before_removing_it(
    target: Target, run: RunCLI, tmp_path: Path
) -> None:
    planted = plant(target.store, time.time(), str(tmp_path / "unpickled"))
    quarantine = tmp_path / "quarantine"

    ran = run("purge", target.url, "--quarantine", str(quarantine))

    assert ran.status == 0, ran.stderr
    assert f"(copied to {quarantine} first)" in ran.stdout
    copies = {}
    for path in quarantine.iterdir():
        session, reason, _ = path.name.split("-")
        copies[session, reason] = path.read_bytes()
    expected = {
        (key_hash(name), str(reason)): payload
        for name, (reason, payload) in planted.corrupt.items()
    }
    assert copies == expected
    for name in planted.corrupt:
        assert target.store.load(name) is None
    assert_live_intact(target.store, planted)


class RewritingStore:
    """A real store whose `scan` lets a live request rewrite one record right after the
    scan read it: the interleaving `purge --corrupt` must survive, made deterministic."""

    def __init__(self, inner: Store, victim: str, rewrite: Callable[[], None]) -> None:
        assert isinstance(inner, ScannableStore)
        self.inner = inner
        self.victim = victim
        self.rewrite = rewrite

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        for found in self.inner.scan(batch_size=batch_size):
            if found.key == self.victim:
                self.rewrite()
            yield found

    def purge_expired_batches(self, batch_size: int = 1000) -> Iterator[PurgeProgress]:
        return self.inner.purge_expired_batches(batch_size)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        return self.inner.delete(key, expected_version=expected_version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_purge_corrupt_keeps_a_record_a_live_request_rewrote_after_the_scan(
    target: Target, run: RunCLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    planted = plant(target.store, now, str(tmp_path / "unpickled"))
    victim = next(iter(planted.corrupt))
    fixed = valid_payload({"user_id": 7, "fixed": True}, now)

    def rewrite() -> None:  # the app resets the corrupt session and saves new data
        target.store.save(victim, fixed, expires_at=now + NOW_OFFSET_LIVE)

    real_open_store = sessionguard.cli.open_store
    monkeypatch.setattr(
        sessionguard.cli,
        "open_store",
        lambda *a, **kw: RewritingStore(real_open_store(*a, **kw), victim, rewrite),
    )

    ran = run("purge", target.url, "--corrupt")

    assert ran.status == 0, ran.stderr
    assert "and 5 corrupt record(s)" in ran.stdout
    assert "1 corrupt record(s) changed meanwhile and were left alone" in ran.stdout
    record = target.store.load(victim)
    assert record is not None and record.payload == fixed


def test_purge_goes_on_past_a_corrupt_record_it_cannot_quarantine(
    target: Target, run: RunCLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = plant(target.store, time.time(), str(tmp_path / "unpickled"))
    quarantine = tmp_path / "quarantine"
    real_open, real_fsync = os.open, os.fsync
    copies: list[int] = []

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if str(path).startswith(str(quarantine)) and not flags & os.O_DIRECTORY:
            copies.append(fd)  # a copy's file, not the directory opened to set its mode
        return fd

    def fsync(fd: int) -> None:
        if len(copies) == 1 and fd == copies[0]:  # the first copy hits a disk error
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)

    ran = run("purge", target.url, "--quarantine", str(quarantine))

    assert ran.status == 1  # something could not be done: say so
    assert "and 5 corrupt record(s)" in ran.stdout and "1 error(s)" in ran.stdout
    left = [name for name in planted.corrupt if target.store.load(name) is not None]
    assert len(left) == 1  # the one whose copy failed was not deleted
    assert f"could not remove corrupt session {key_hash(left[0])}" in ran.stderr
    assert "Input/output error" in ran.stderr
    assert len(list(quarantine.iterdir())) == 5  # no partial copy left behind
    assert_live_intact(target.store, planted)


def test_purge_goes_on_past_an_expired_file_it_cannot_remove(
    tmp_path: Path, run: RunCLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "sessions")
    planted = plant(store, time.time(), str(tmp_path / "unpickled"), expired=6)
    stuck = store._locate(planted.expired[2])[1]
    real_unlink = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path) == stuck:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)

    ran = run("purge", str(tmp_path / "sessions"), "--corrupt", "--batch", "1")

    assert ran.status == 1
    assert expired_removed(ran.stdout) == 5
    assert "and 6 corrupt record(s); 1 error(s)" in ran.stdout
    assert "Permission denied" in ran.stderr
    assert os.path.exists(stuck)
    assert_live_intact(store, planted)


def test_purge_draws_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")
    plant(store, time.time(), str(tmp_path / "unpickled"), live=30, expired=30)
    store.close()
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "sessionguard", "purge", str(tmp_path / "sessions")]
            + ["--corrupt"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            cwd=REPO,
        )
        os.close(terminal)
        drawn = b""
        while True:  # until the child closes its end (EIO on Linux); bounded by its exit
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)

    assert process.returncode == 0
    screen = drawn.decode()
    assert "\r" in screen and "100%" in screen and "[" + "#" * 30 + "]" in screen
    assert "30 expired removed" in screen and "6 removed" in screen
    assert stdout.decode().startswith("purge: removed 30 expired record(s) and 6 corrupt")


def test_purge_without_a_terminal_prints_only_the_summary_line(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")
    plant(store, time.time(), str(tmp_path / "unpickled"))
    store.close()

    done = subprocess.run(
        [sys.executable, "-m", "sessionguard", "purge", str(tmp_path / "sessions")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )

    assert done.returncode == 0
    assert done.stdout == "purge: removed 5 expired record(s); 0 error(s)\n"
    assert done.stderr == ""
