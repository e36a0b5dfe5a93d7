"""Purging while the app serves: a record refreshed or rewritten while the purge runs is
never deleted. First each known interleaving, made deterministic; then a live writer that
keeps refreshing sessions while `sessionguard purge` runs over and over, on every store."""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from sessionguard.stores import FileStore, Store
from sessionguard.stores.sql import SQLStore
from sessionguard.target import open_store

from .plant import key, valid_payload

if TYPE_CHECKING:
    from tests.cli.conftest import RunCLI, Target
    from tests.servers import PostgresServer

SUMMARY = re.compile(r"purge: removed (\d+) expired record\(s\)")
WAIT = 10.0  # upper bound on waiting for another thread; reached only when a test fails
KEY = key("race", 0)
PAYLOAD = b"a live session"


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_file_purge_keeps_a_record_touched_between_its_check_and_its_unlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh lands after purge saw the record expired, before it unlinks it.

    Two clocks make that possible for real: the app sees the record live, the purge
    (another host on a shared directory, or a moment later) sees it expired.
    """
    now = float(int(time.time()))
    app = FileStore(tmp_path / "sessions", clock=lambda: now)
    purge = FileStore(tmp_path / "sessions", clock=lambda: now + 100)
    app.save(KEY, PAYLOAD, expires_at=now + 50)
    path = app._locate(KEY)[1]
    pool = concurrent.futures.ThreadPoolExecutor(1)
    asked_for_lock = threading.Event()
    touched: list[concurrent.futures.Future[bool]] = []
    real_unlink, real_flock = os.unlink, fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if threading.current_thread() is not threading.main_thread():
            asked_for_lock.set()
        real_flock(fd, operation)

    def unlink(target: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(target) == path and not touched:
            # A request refreshes the session now: let it run until it is done or waits.
            touched.append(pool.submit(app.touch, KEY, now + 10_000))
            wait_until(lambda: touched[0].done() or asked_for_lock.is_set(), "touch ran")
        real_unlink(target, *args, **kwargs)

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(os, "unlink", unlink)
    try:
        purge.purge_expired()
        refreshed = touched[0].result(timeout=WAIT)
    finally:
        pool.shutdown(wait=True)

    # Either order is fine, but what the app was told must be what happened.
    assert refreshed == os.path.exists(path), "touch reported success for a deleted session"


def test_postgres_purge_keeps_a_row_refreshed_while_its_delete_waited_for_the_row_lock(
    postgres_server: PostgresServer,
) -> None:
    """PostgreSQL re-checks a locked row's WHERE clause on its new version after the wait.

    The refreshing transaction holds the row lock when the purge's DELETE reaches the
    row; the DELETE must see the new deadline once it may proceed.
    """
    table = f"race_{uuid.uuid4().hex[:12]}"
    now = float(int(time.time()))
    purge = SQLStore(postgres_server.url, table_name=table, clock=lambda: now)
    purge.save(KEY, PAYLOAD, expires_at=now - 10)
    engine = sa.create_engine(postgres_server.url)
    result: list[int] = []
    try:
        with engine.connect() as app:
            refresh = app.begin()
            app.execute(
                sa.text(f"UPDATE {table} SET expires_at = :e WHERE id = :k"),
                {"e": now + 1000, "k": KEY},
            )
            purging = threading.Thread(target=lambda: result.append(purge.purge_expired()))
            purging.start()
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            wait_until(lambda: postgres_server.sql(waiting) != "0", "the DELETE waits")
            refresh.commit()
            purging.join(timeout=WAIT)
        assert result == [0]
        record = purge.load(KEY)
        assert record is not None and record.expires_at == now + 1000
    finally:
        purge.close()
        engine.dispose()


# -- a live writer racing the command ------------------------------------------------------
SKEW = 1000.0  # the writer's clock runs this far behind the purge's


def writer_store(target: Target) -> Store:
    """The app's view of the store, with a clock behind the purge's.

    A record saved to live `SKEW / 2` more seconds by the writer's clock is already
    expired by the purge's: every round hands the purge candidates that the writer then
    refreshes, so the refresh and the purge's "expired? delete" keep colliding.
    """

    def clock() -> float:
        return time.time() - SKEW

    if target.kind == "file":
        return FileStore(target.url, clock=clock)
    if target.kind.startswith("redis"):
        return open_store(target.url)  # Redis expires keys by its own clock
    return SQLStore(target.url, clock=clock)


def test_purge_racing_a_live_writer_loses_nothing_live(target: Target, run: RunCLI) -> None:
    writer = writer_store(target)
    names = [key("racer", i) for i in range(24)]
    latest: dict[str, bytes] = {}
    lost: list[str] = []
    finished = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            deadline = time.monotonic() + 2.5
            for round_ in range(30):
                if time.monotonic() > deadline:
                    break
                for name in names:
                    if name in latest and writer.load(name) is None:
                        lost.append(name)  # refreshed far into the future, and gone
                    payload = valid_payload({"round": round_}, time.time())
                    now = time.time() - SKEW
                    writer.save(name, payload, expires_at=now + SKEW / 2)
                    # The refresh; if the purge already took the record, it is re-created.
                    if not writer.touch(name, now + 5 * SKEW):
                        writer.save(name, payload, expires_at=now + 5 * SKEW)
                    latest[name] = payload
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            finished.set()

    thread = threading.Thread(target=write)
    thread.start()
    purged = 0
    try:
        for _ in range(300):
            ran = run("purge", target.url, "--corrupt")
            assert ran.status == 0, ran.stderr
            found = SUMMARY.search(ran.stdout)
            assert found is not None, ran.stdout
            purged += int(found.group(1))
            if finished.is_set():
                break
    finally:
        thread.join(timeout=30)
        writer.close()

    assert not failure, failure
    assert not lost, f"purge deleted {len(lost)} freshly refreshed session(s)"
    for name in names:
        record = target.store.load(name)
        assert record is not None and record.payload == latest[name], name
    if not target.expires_by_itself:
        assert purged > 0, "the purge never found a candidate: the race was not exercised"
