"""`scan` and `purge` on a session directory where someone planted links, FIFOs, sockets
and oversized files at record names, or a symbolic link in place of a fan-out directory.

The commands must report each planted name as corrupt without reading or following it,
never block on a FIFO, and remove (or quarantine) only the name: a link to a secret file
must not leave a copy of the secret in the quarantine, and a purge must never delete a
file outside the store.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sessionguard.stores import FileStore
from sessionguard.stores.filelayout import old_path as _old_path
from tests.planted import KINDS, SECRET, mode_of, plant, umask, within_time
from tests.record_files import framed

from .plant import key, valid_payload

if TYPE_CHECKING:
    from tests.cli.conftest import RunCLI


class Directory:
    """A session directory with live records, and records replaced by planted names."""

    def __init__(self, root: Path, outside: Path) -> None:
        self.root, self.outside = root, outside
        self.store = FileStore(root)
        self.now = time.time()
        self.live = {key("live", n): valid_payload({"n": n}, self.now) for n in range(3)}
        for name, payload in self.live.items():
            self.store.save(name, payload, expires_at=self.now + 3600)
        self.planted: list[Path] = []
        for n, kind in enumerate(KINDS):
            path = self.replaced(key(f"planted-{kind}", n))
            plant(kind, path, outside / kind)
            self.planted.append(path)

    def path(self, name: str) -> Path:
        return Path(self.store._locate(name)[1])

    def replaced(self, name: str) -> Path:
        """The path of a record that was saved, then removed to make room for a plant."""
        self.store.save(name, valid_payload({}, self.now), expires_at=self.now + 3600)
        path = self.path(name)
        path.unlink()
        return path

    def assert_live_intact(self) -> None:
        for name, payload in self.live.items():
            record = self.store.load(name)
            assert record is not None and record.payload == payload, name

    def secrets_intact(self) -> bool:
        return (self.outside / "link_to_secret" / "shadow").read_bytes() == SECRET


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    return Directory(tmp_path / "sessions", tmp_path / "outside")


def test_scan_counts_planted_names_and_oversized_files_as_corrupt_without_blocking(
    directory: Directory, run: RunCLI
) -> None:
    oversized = directory.replaced(key("oversized", 0))
    with open(oversized, "wb") as file:  # sparse: nothing of it is on disk
        file.truncate((1 << 20) + 1)  # one byte over the default max_record_size

    ran = within_time(lambda: run("scan", str(directory.root), "--json"))

    assert ran.status == 1, ran.stderr
    report = json.loads(ran.stdout)
    assert report["live"] == len(directory.live)
    assert {reason: n for reason, n in report["corrupt_by_reason"].items() if n} == {
        "not_a_file": len(KINDS),
        "oversized": 1,
    }
    assert report["sizes"]["max"] < 1000  # nothing planted was read
    assert directory.secrets_intact()
    assert all(os.path.lexists(path) for path in directory.planted)  # scan changes nothing


def test_purge_quarantine_removes_planted_names_and_copies_nothing_they_point_to(
    directory: Directory, run: RunCLI, tmp_path: Path
) -> None:
    quarantine = tmp_path / "kept" / "corrupt"

    with umask(0):
        ran = within_time(
            lambda: run("purge", str(directory.root), "--quarantine", str(quarantine))
        )

    kept = [path.read_bytes() for path in (tmp_path / "kept").rglob("*") if path.is_file()]
    assert not [body for body in kept if SECRET[:16] in body], "the secret was copied"
    assert ran.status == 0, ran.stderr
    assert f"and {len(KINDS)} corrupt record(s)" in ran.stdout
    copies = sorted(quarantine.iterdir())
    assert len(copies) == len(KINDS)
    assert all("-not_a_file-" in copy.name and copy.read_bytes() == b"" for copy in copies)
    assert mode_of(quarantine) == mode_of(quarantine.parent) == 0o700
    assert not any(os.path.lexists(path) for path in directory.planted)
    assert directory.secrets_intact()
    assert not (directory.outside / "dangling_link" / "not-there-yet").exists()
    directory.assert_live_intact()


@pytest.mark.parametrize("level", ["top", "second"])
def test_purge_never_deletes_anything_through_a_symlinked_fan_out_directory(
    directory: Directory, run: RunCLI, tmp_path: Path, level: str
) -> None:
    name = key("elsewhere", 0)
    parent = directory.path(name).parent
    elsewhere = tmp_path / "elsewhere"
    mirror = elsewhere
    mirror.mkdir(parents=True)
    files = {
        name: framed(b"expired, if it were ours", directory.now - 3600),
        key("elsewhere", 1): b"corrupt, if it were ours",
        f".{name}.tmp": b"a leftover temp file, if it were ours",
    }
    for file_name, body in files.items():
        (mirror / file_name).write_bytes(body)
    if level == "top":
        parent.symlink_to(elsewhere, target_is_directory=True)
    else:  # the second level of the layout before 0.2, which purge still walks
        parent.mkdir(mode=0o700, exist_ok=True)
        Path(_old_path(str(directory.root), name)).parent.symlink_to(
            elsewhere, target_is_directory=True
        )

    ran = within_time(lambda: run("purge", str(directory.root), "--corrupt"))

    assert ran.status == 0, ran.stderr
    assert "removed 0 expired record(s)" in ran.stdout
    assert {path.name: path.read_bytes() for path in mirror.iterdir()} == files
    directory.assert_live_intact()


@pytest.mark.parametrize("command", ["scan", "purge"])
def test_a_session_directory_others_can_write_to_is_refused_with_the_fix(
    directory: Directory, run: RunCLI, command: str
) -> None:
    directory.root.chmod(0o777)

    ran = run(command, str(directory.root))

    assert ran.status == 2
    assert "writable by group or others (mode 0777)" in ran.stderr
    assert f"chmod 700 {directory.root}" in ran.stderr
    assert all(os.path.lexists(path) for path in directory.planted)
    directory.root.chmod(0o700)  # the fix the message gives
    directory.assert_live_intact()
