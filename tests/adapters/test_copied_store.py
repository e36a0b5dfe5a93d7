"""A session directory copied without its files' times, and one written by sessionguard 0.1.

Operators restore session directories from backups, move them to other disks, `cp -r` or
`rsync -r` them: every file's mtime becomes the time of the copy. sessionguard 0.1 kept
each record's deadline only in its mtime, so such a copy logged every user out. These
tests copy a real directory with a real `cp -r` (and `shutil.copytree` with plain
`shutil.copy`, which drops times too) and serve the copy with a new app, under both
adapters: every session keeps its data until its real deadline, and not one second longer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessionguard import CorruptionEvent, CorruptionPolicy
from sessionguard.stores import FileStore

from .apps import SetCookie, cookie_header, session_set_cookie
from .conftest import ClientFactory

pytestmark = pytest.mark.integration  # real `cp` processes and real seconds of waiting

FIXTURE_0_1 = Path(__file__).parents[1] / "fixtures" / "filestore-0.1"


def cp_r(source: Path, destination: Path) -> None:
    subprocess.run(["cp", "-r", str(source), str(destination)], check=True)


def copytree_without_times(source: Path, destination: Path) -> None:
    shutil.copytree(source, destination, copy_function=shutil.copy)


COPIES: dict[str, Callable[[Path, Path], None]] = {
    "cp-r": cp_r,
    "copytree-copy": copytree_without_times,
}


def assert_times_were_lost(source: Path, destination: Path) -> None:
    """The copy really did give every record file a new mtime (else the test proves nothing)."""
    for original in source.glob("??/??/*"):
        copied = destination / original.relative_to(source)
        assert copied.stat().st_mtime_ns != original.stat().st_mtime_ns, copied


async def create(make_client: ClientFactory, count: int, max_age: int | None = None) -> SetCookie:
    client = make_client() if max_age is None else make_client(max_age=max_age)
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    for _ in range(count - 1):
        await client.get("/count", cookie=cookie_header(cookie.value))
    return cookie


@pytest.mark.parametrize("copy", COPIES.values(), ids=COPIES.keys())
async def test_every_session_keeps_its_data_in_a_copy_without_times(
    make_client: ClientFactory, store_dir: Path, tmp_path: Path, copy: Callable[[Path, Path], None]
) -> None:
    cookies = [await create(make_client, count) for count in (1, 2, 3)]
    time.sleep(0.05)  # so that "now", the copy's mtime, differs from the writes' mtimes
    copied = tmp_path / "restored"
    copy(store_dir, copied)
    assert_times_were_lost(store_dir, copied)

    client = make_client(store=FileStore(copied))
    for count, cookie in enumerate(cookies, 1):
        response = await client.get("/read", cookie=cookie_header(cookie.value))
        assert response.json() == {"count": count}


async def test_a_copied_session_still_expires_at_its_own_deadline(
    make_client: ClientFactory, store_dir: Path, tmp_path: Path
) -> None:
    cookie = await create(make_client, 2, max_age=2)
    copied = tmp_path / "restored"
    cp_r(store_dir, copied)
    client = make_client(store=FileStore(copied), max_age=2)
    # A write, which does not move the deadline of the copy's record on the first read.
    first = await client.get("/read", cookie=cookie_header(cookie.value))
    assert first.json() == {"count": 2}

    time.sleep(3)  # past the deadline (2 s idle), which the copy must not have extended

    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {}
    cleared = session_set_cookie(response)
    assert cleared is not None and cleared.clears


async def test_a_session_kept_alive_by_reads_survives_a_copy(
    make_client: ClientFactory, store_dir: Path, tmp_path: Path
) -> None:
    cookie = await create(make_client, 1, max_age=2)
    reader = make_client(max_age=2)
    # Read-only requests slide the 2 s idle deadline: 1.2 s and 2.4 s after the write,
    # the second one past the session's first deadline.
    for _ in range(2):
        time.sleep(1.2)
        response = await reader.get("/read", cookie=cookie_header(cookie.value))
        assert response.json() == {"count": 1}
    copied = tmp_path / "restored"
    cp_r(store_dir, copied)

    client = make_client(store=FileStore(copied), max_age=2)
    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {"count": 1}


# -- a directory written by sessionguard 0.1 -------------------------------------------------

# Made by the real 0.1 middleware; the JSON says how, and holds the cookies and data.
MANIFEST_0_1: dict[str, Any] = json.loads(FIXTURE_0_1.with_name("filestore-0.1.json").read_text())
# The fixture's records were created in November 2026: keep them inside the absolute lifetime.
LIFETIME = 100 * 365 * 24 * 3600


def restore_0_1(tmp_path: Path, deadline: float) -> Path:
    """The 0.1 fixture directory, with each record's mtime (its 0.1 deadline) set to
    `deadline`: git does not keep file times."""
    directory = tmp_path / "sessions-0.1"
    shutil.copytree(FIXTURE_0_1, directory)
    for entry in MANIFEST_0_1["sessions"].values():
        path = directory / entry["path"]
        assert path.read_bytes()[:3] == b"SG\x01", "not a 0.1 record"
        os.utime(path, (deadline, deadline))
    return directory


async def test_a_directory_written_by_0_1_loads_and_is_upgraded_on_the_next_write(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    directory = restore_0_1(tmp_path, time.time() + 3600)
    secret = MANIFEST_0_1["secret"]
    client = make_client(store=FileStore(directory), secret_key=secret, absolute_timeout=LIFETIME)
    for entry in MANIFEST_0_1["sessions"].values():
        response = await client.get("/read", cookie=cookie_header(entry["cookie"]))
        assert response.json() == entry["data"]

    alice = MANIFEST_0_1["sessions"]["alice"]
    response = await client.get("/count", cookie=cookie_header(alice["cookie"]))
    assert response.json() == {"count": 1}
    # Rewritten with its header, and moved from the 0.1 layout's two fan-out levels to one.
    assert not (directory / alice["path"]).exists()
    upgraded = Path(FileStore(directory)._locate(alice["cookie"].split(".")[0])[1])
    assert upgraded.read_bytes()[:4] == b"SGF1", "no header after the write"
    # Upgraded, the record survives a copy like any other.
    copied = tmp_path / "copied"
    cp_r(directory, copied)
    client = make_client(store=FileStore(copied), secret_key=secret, absolute_timeout=LIFETIME)
    response = await client.get("/read", cookie=cookie_header(alice["cookie"]))
    assert response.json() == {**alice["data"], "count": 1}


async def test_a_0_1_record_past_its_mtime_deadline_is_expired_not_corrupt(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    directory = restore_0_1(tmp_path, time.time() - 1)
    events: list[CorruptionEvent] = []
    client = make_client(
        store=FileStore(directory),
        secret_key=MANIFEST_0_1["secret"],
        absolute_timeout=LIFETIME,
        policy=CorruptionPolicy("reject", on_event=events.append),
    )
    bob = MANIFEST_0_1["sessions"]["bob"]
    response = await client.get("/read", cookie=cookie_header(bob["cookie"]))
    assert response.status_code == 200
    assert response.json() == {}
    assert events == []
