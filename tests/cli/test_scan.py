"""`sessionguard scan`: counts, reasons, sizes and leftovers, read-only, with exit statuses
that cron and CI can alert on; against a directory, SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from sessionguard.cli import open_store
from sessionguard.errors import CorruptReason
from sessionguard.ops import key_hash
from sessionguard.stores import FileStore
from tests.servers import PostgresServer, free_port

from .plant import key, plant, valid_payload

if TYPE_CHECKING:
    from tests.cli.conftest import RunCLI, Target

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root` (hidden ones included) with its bytes and mtime."""
    found = {}
    for parent, _, files in os.walk(root):
        for name in files:
            path = Path(parent, name)
            found[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def test_scan_counts_live_expired_and_each_corrupt_reason(
    target: Target, run: RunCLI, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    planted = plant(target.store, time.time(), str(marker))

    ran = run("scan", target.url, "--json")

    assert ran.status == 1, ran.stderr  # corrupt records: non-zero for cron and CI
    report = json.loads(ran.stdout)
    expired = 0 if target.expires_by_itself else len(planted.expired)
    assert report["live"] == len(planted.live)
    assert report["expired"] == expired
    # Every reason is listed; the ones only a file can have (not_a_file, oversized) at 0.
    planted_reasons = {reason for reason, _ in planted.corrupt.values()}
    assert report["corrupt"] == len(planted.corrupt) == len(planted_reasons)
    assert report["corrupt_by_reason"] == {
        str(reason): int(reason in planted_reasons) for reason in CorruptReason
    }
    assert report["records"] == len(planted.live) + expired + len(planted.corrupt)
    sizes = sorted(
        [len(p) for p in planted.live.values()] + [len(p) for _, p in planted.corrupt.values()]
    )
    assert report["sizes"]["max"] >= sizes[-1]
    assert not marker.exists(), "scan ran pickle on a planted record"


def test_scan_of_a_clean_store_exits_0(target: Target, run: RunCLI) -> None:
    now = time.time()
    for i in range(3):
        target.store.save(key("ok", i), valid_payload({"n": i}, now), expires_at=now + 60)

    ran = run("scan", target.url)

    assert ran.status == 0, ran.stderr
    assert "live                3" in ran.stdout
    assert "corrupt             0" in ran.stdout


def test_python_m_sessionguard_scan_reports_in_text_and_exits_1(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    store = FileStore(directory)
    planted = plant(store, time.time(), str(tmp_path / "unpickled"))
    store.close()

    done = subprocess.run(
        [sys.executable, "-m", "sessionguard", "scan", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )

    assert done.returncode == 1, done.stderr
    assert f"{len(planted.live) + len(planted.expired) + 6} records" in done.stdout
    assert f"live        {len(planted.live):>9}" in done.stdout
    assert f"expired     {len(planted.expired):>9}" in done.stdout
    assert "corrupt             6  (empty 1, truncated 1, bad_magic 1, " in done.stdout
    assert "checksum_mismatch 1, legacy_pickle 1, undecodable 1)" in done.stdout
    assert done.stderr == ""


def test_scan_changes_nothing_in_the_directory(tmp_path: Path, run: RunCLI) -> None:
    directory = tmp_path / "sessions"
    store = FileStore(directory, stripes=256)
    plant(store, time.time(), str(tmp_path / "unpickled"))
    orphan = Path(store._locate(key("killed", 0))[1]).with_name(f".{key('killed', 0)}.tmp")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"SG\x01")
    store.close()
    before = snapshot(directory)

    assert run("scan", str(directory)).status == 1
    assert run("scan", str(directory), "--json").status == 1

    assert snapshot(directory) == before  # no lock file created, no mtime moved


def test_scan_lists_unusual_sizes_by_key_hash_and_never_prints_an_id(
    tmp_path: Path, run: RunCLI
) -> None:
    store = FileStore(tmp_path / "sessions")
    now = time.time()
    for i in range(30):
        store.save(key("ok", i), valid_payload({"n": i}, now), expires_at=now + 60)
    huge = valid_payload({"upload": "x" * 50_000}, now)
    store.save(key("huge", 0), huge, expires_at=now + 60)
    store.save(key("empty", 0), b"", expires_at=now + 60)
    store.close()

    ran = run("scan", str(tmp_path / "sessions"), "--json")
    text = run("scan", str(tmp_path / "sessions"))

    report = json.loads(ran.stdout)
    assert report["unusual"]["large"] == [{"session": key_hash(key("huge", 0)), "bytes": len(huge)}]
    assert report["unusual"]["small"] == [{"session": key_hash(key("empty", 0)), "bytes": 0}]
    assert report["sizes"]["max"] == len(huge)
    assert f"large       1 over 10x the median: {key_hash(key('huge', 0))} (" in text.stdout
    assert (
        f"small       1 under 1/10 of the median: {key_hash(key('empty', 0))} (0 B)" in text.stdout
    )
    for output in (ran.stdout, text.stdout, ran.stderr, text.stderr):
        assert "ok-0" not in output and "huge-0" not in output and "empty-0" not in output


def test_scan_reports_temp_files_left_by_killed_writers(tmp_path: Path, run: RunCLI) -> None:
    store = FileStore(tmp_path / "sessions")
    now = time.time()
    store.save(key("ok", 0), valid_payload({}, now), expires_at=now + 60)
    for i in range(2):
        path = Path(store._locate(key("killed", i))[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(f".{path.name}.tmp").write_bytes(b"half a rec")
    store.close()

    report = json.loads(run("scan", str(tmp_path / "sessions"), "--json").stdout)

    assert report["leftover_temp_files"] == 2
    assert report["records"] == 1 and report["corrupt"] == 0


def test_scan_of_an_unreachable_redis_exits_2_with_the_message_and_no_traceback() -> None:
    port = free_port()  # a port nobody listens on

    done = subprocess.run(
        [sys.executable, "-m", "sessionguard", "scan", f"redis://127.0.0.1:{port}/0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )

    assert done.returncode == 2
    assert "RedisStore could not scan a session" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_scan_of_a_missing_directory_is_an_error_that_creates_nothing(
    tmp_path: Path, run: RunCLI
) -> None:
    missing = tmp_path / "sesions"  # a typo

    ran = run("scan", str(missing))

    assert ran.status == 2
    assert "is not a sessionguard session directory" in ran.stderr
    assert not missing.exists()


def test_scan_of_a_missing_sqlite_file_is_an_error_that_creates_nothing(
    tmp_path: Path, run: RunCLI
) -> None:
    ran = run("scan", f"sqlite:///{tmp_path / 'nope.db'}")

    assert ran.status == 2
    assert "there is no SQLite database" in ran.stderr
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_exit_2(run: RunCLI, tmp_path: Path) -> None:
    assert run().status == 2
    assert run("scan").status == 2
    assert run("frobnicate", str(tmp_path)).status == 2
    assert run("purge", str(tmp_path), "--batch", "0").status == 2
    ran = run("scan", "ftp://example.invalid/sessions")
    assert ran.status == 2 and "unknown store URL" in ran.stderr


def test_a_password_in_the_target_url_is_never_printed(
    postgres_server: PostgresServer, run: RunCLI
) -> None:
    name = f"cli_{uuid.uuid4().hex[:12]}"
    postgres_server.sql(f"CREATE DATABASE {name}")
    url = postgres_server.url.rsplit("/", 1)[0] + "/" + name
    url = url.replace("postgres@", "postgres:s3cret@")  # trust auth ignores the password
    store = open_store(url)
    store.save(key("ok", 0), valid_payload({}, time.time()), expires_at=time.time() + 60)
    store.close()
    unreachable = "postgresql+psycopg://user:s3cret@127.0.0.1:1/db"

    found = run("scan", url, "--json", "--table", "sessionguard_sessions")
    failed = run("scan", unreachable)

    assert found.status == 0, found.stderr
    assert json.loads(found.stdout)["target"] == url.replace("s3cret", "***")
    assert failed.status == 2 and "SQLStore could not" in failed.stderr
    for ran in (found, failed):
        assert "s3cret" not in ran.stdout + ran.stderr
