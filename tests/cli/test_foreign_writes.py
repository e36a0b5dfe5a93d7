"""`scan` and `purge` on a session directory where other programs damaged records in place.

A foreign writer (a crashed script, the old backend during a migration) gives the file it
damages a fresh mtime. sessionguard 0.1 kept the deadline in the mtime, so such a record
read as *expired*: `scan` exited 0 and the cron alert never fired. Bytes decide now.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sessionguard.errors import CorruptReason
from sessionguard.ops import key_hash
from sessionguard.stores import FileStore

from .plant import key, valid_payload

if TYPE_CHECKING:
    from tests.cli.conftest import RunCLI

DAMAGE: dict[str, tuple[Callable[[bytes], bytes], CorruptReason]] = {
    "zero_bytes": (lambda good: b"", CorruptReason.EMPTY),
    "truncated": (lambda good: good[: len(good) // 2], CorruptReason.TRUNCATED),
    "garbage": (lambda good: b"\x00\xffnot a session\x13\x37", CorruptReason.BAD_MAGIC),
    "pickle": (lambda good: pickle.dumps({"_auth_user_id": "7"}), CorruptReason.LEGACY_PICKLE),
    "flipped_bit": (
        lambda good: good[:-5] + bytes([good[-5] ^ 0x10]) + good[-4:],
        CorruptReason.CHECKSUM_MISMATCH,
    ),
}


class Directory:
    """A session directory with live, expired and in-place-damaged records."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = FileStore(root)
        now = time.time()
        self.live = {key("live", n): valid_payload({"n": n}, now) for n in range(4)}
        for name, payload in self.live.items():
            self.store.save(name, payload, expires_at=now + 3600)
        self.expired = key("expired", 0)
        self.store.save(self.expired, valid_payload({"n": -1}, now), expires_at=now - 60)
        self.damaged: dict[str, tuple[CorruptReason, bytes]] = {}
        for n, (damage, reason) in enumerate(DAMAGE.values()):
            name = key(f"damaged-{reason}", n)
            self.store.save(name, valid_payload({"n": n}, now), expires_at=now + 3600)
            self.damaged[name] = (reason, self.damage_in_place(name, damage))

    def path(self, name: str) -> Path:
        return Path(self.store._locate(name)[1])

    def damage_in_place(self, name: str, damage: Callable[[bytes], bytes]) -> bytes:
        path = self.path(name)
        bad = damage(path.read_bytes())
        with open(path, "r+b") as file:  # same inode, truncated, new bytes: a fresh mtime
            file.truncate(0)
            file.write(bad)
        return bad

    def assert_live_intact(self) -> None:
        for name, payload in self.live.items():
            record = self.store.load(name)
            assert record is not None and record.payload == payload, name


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    return Directory(tmp_path / "sessions")


def test_scan_counts_records_damaged_in_place_as_corrupt_and_exits_1(
    directory: Directory, run: RunCLI
) -> None:
    ran = run("scan", str(directory.root), "--json")

    assert ran.status == 1, ran.stderr
    report = json.loads(ran.stdout)
    assert (report["live"], report["expired"]) == (len(directory.live), 1)
    assert report["corrupt_by_reason"] == {
        str(reason): sum(1 for r, _ in directory.damaged.values() if r == reason)
        for reason in CorruptReason
    }


def test_scan_counts_a_damaged_record_as_corrupt_even_when_its_mtime_is_old(
    directory: Directory, run: RunCLI
) -> None:
    for name in directory.damaged:
        os.utime(directory.path(name), (0, 0))

    report = json.loads(run("scan", str(directory.root), "--json").stdout)

    assert report["corrupt"] == len(DAMAGE)
    assert report["expired"] == 1


def test_plain_purge_keeps_damaged_records_and_purge_corrupt_removes_them(
    directory: Directory, run: RunCLI
) -> None:
    for name in directory.damaged:
        os.utime(directory.path(name), (0, 0))  # old as well as damaged

    ran = run("purge", str(directory.root))

    assert ran.status == 0, ran.stderr
    assert "removed 1 expired record(s)" in ran.stdout
    for name, (_, bad) in directory.damaged.items():
        assert directory.path(name).read_bytes() == bad, "plain purge removed a corrupt record"

    ran = run("purge", str(directory.root), "--corrupt")

    assert ran.status == 0, ran.stderr
    assert f"and {len(DAMAGE)} corrupt record(s)" in ran.stdout
    for name in directory.damaged:
        assert not directory.path(name).exists()
    directory.assert_live_intact()
    assert run("scan", str(directory.root)).status == 0


def test_purge_quarantine_keeps_the_exact_damaged_bytes(
    directory: Directory, run: RunCLI, tmp_path: Path
) -> None:
    quarantine = tmp_path / "quarantine"

    ran = run("purge", str(directory.root), "--quarantine", str(quarantine))

    assert ran.status == 0, ran.stderr
    copies = {tuple(path.name.split("-")[:2]): path.read_bytes() for path in quarantine.iterdir()}
    assert copies == {
        (key_hash(name), str(reason)): bad for name, (reason, bad) in directory.damaged.items()
    }
    directory.assert_live_intact()
