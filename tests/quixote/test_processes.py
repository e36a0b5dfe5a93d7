"""The seed's failures, across real processes, on one FileStore directory (and Redis).

`DirectorySessionStore` truncates a session file before it locks it, so a reader in
another process reads zero bytes and sleeps 0.1 s in a retry loop (forever, if the writer
died); and each save pickles the whole object, so concurrent requests lose each other's
changes. Here the same workloads run on `SessionGuardStore`. Nothing is patched: the
reader counts what `load_session` returns and raises, and an audit hook (Python raises
the `time.sleep` audit event for every sleep) counts the sleeps of each process.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import redis

from sessionguard.quixote import SessionGuardStore
from sessionguard.target import open_store

from .conftest import SECRET, AppDictSession, AppSession

pytestmark = pytest.mark.integration

SID = "raceRACE123"
SECONDS = 3.0  # each side of the race runs at least this long...
READS = 2000  # ...and until the reader has read at least this often (20 s at most)
WRITERS = 4
ROUNDS = 150
REDIS_DB = 7  # a database of these tests' own, flushed first


def _sleeps() -> list[float]:
    slept: list[float] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "time.sleep":
            slept.append(args[0])

    sys.addaudithook(hook)  # this child process's own: it ends with the process
    return slept


def _race_side(target: str, role: str, start: Any, results: Any) -> None:
    store = SessionGuardStore(open_store(target), secret_key=SECRET, session_class=AppSession)
    counts = {"rounds": 0, "none": 0, "errors": 0, "went_back": 0}
    errors: list[str] = []
    start.wait()
    slept = _sleeps()
    began, last = time.monotonic(), -1
    while True:
        elapsed = time.monotonic() - began
        if elapsed >= SECONDS and (counts["rounds"] >= READS or role == "writer"):
            break
        if elapsed >= 20:
            break
        try:
            session = store.load_session(SID)
            if session is None:
                counts["none"] += 1
            elif role == "writer":
                session.counter += 1
                session.cart = [f"item-{session.counter}"] * (session.counter % 7)
                store.save_session(session)
            elif session.counter < last:
                counts["went_back"] += 1  # an older copy after a newer one
            else:
                last = session.counter
        except Exception:
            counts["errors"] += 1
            errors.append(traceback.format_exc())
        counts["rounds"] += 1
    counts["sleeps"] = len(slept)
    store.store.close()
    results.put((role, counts, errors[:3]))


def _changer(target: str, worker: int, start: Any, results: Any) -> None:
    store = SessionGuardStore(open_store(target), secret_key=SECRET, session_class=AppDictSession)
    missing = errors = 0
    start.wait()
    for n in range(ROUNDS):
        try:
            session = store.load_session(SID)
            if session is None:
                missing += 1
                continue
            setattr(session, f"attribute_{worker}_{n}", n)  # one attribute per change
            session[f"item_{worker}_{n}"] = [worker, n]  # and one item
            session._access_time = time.time()  # the one every request changes
            session.create_form_token()
            store.save_session(session)
        except Exception:
            errors += 1
    store.store.close()
    results.put((worker, missing, errors))


@pytest.fixture(params=["file", "redis"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return str(tmp_path / "sessions")
    server = request.getfixturevalue("redis_server")
    url = f"redis://127.0.0.1:{server.port}/{REDIS_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


def _run(function: Any, target: str, args: list[Any]) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(args))
    results = context.Queue()
    processes = [
        context.Process(target=function, args=(target, arg, start, results)) for arg in args
    ]
    for process in processes:
        process.start()
    found = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    return found


def _seed(target: str, session_class: type[Any], **attributes: Any) -> SessionGuardStore:
    store = SessionGuardStore(open_store(target), secret_key=SECRET, session_class=session_class)
    session = object.__new__(session_class)  # as a DirectorySessionStore unpickles it
    if session_class is AppDictSession:
        session.data = {}
    session.__dict__.update(
        id=SID,
        user="ada",
        _creation_time=time.time(),
        _access_time=time.time(),
        _remote_address="192.0.2.7",
        _form_tokens=[],
        **attributes,
    )
    store.save_session(session)
    return store


def test_a_reader_never_sees_an_empty_or_torn_session(target: str) -> None:
    """The seed's race: one writer, one reader of one session, in two processes."""
    store = _seed(target, AppSession, counter=0, cart=[])

    sides = dict(
        (role, (counts, errors))
        for role, counts, errors in _run(_race_side, target, ["writer", "reader"])
    )

    (reader, reader_errors), (writer, writer_errors) = sides["reader"], sides["writer"]
    where = "redis" if target.startswith("redis") else "file"
    print(f"\n{where}: reader {reader}, writer {writer}")  # shown with -s
    assert reader["rounds"] >= READS
    assert writer["rounds"] > 0
    assert reader["none"] == 0, "a load found no session (the seed's empty file)"
    assert reader["errors"] == 0, reader_errors
    assert writer["errors"] == 0 and writer["none"] == 0, writer_errors
    assert reader["went_back"] == 0
    assert reader["sleeps"] == 0 and writer["sleeps"] == 0
    final = store.load_session(SID)
    assert final is not None and final.counter == writer["rounds"]
    store.store.close()


def test_concurrent_changes_from_four_processes_are_all_kept(target: str) -> None:
    store = _seed(target, AppDictSession)

    outcomes = _run(_changer, target, list(range(WRITERS)))

    assert [(missing, errors) for _, missing, errors in sorted(outcomes)] == [(0, 0)] * WRITERS
    final = store.load_session(SID)
    lost = [
        (worker, n)
        for worker in range(WRITERS)
        for n in range(ROUNDS)
        if getattr(final, f"attribute_{worker}_{n}", None) != n
        or final.get(f"item_{worker}_{n}") != [worker, n]
    ]
    assert lost == []
    assert final.user == "ada"
    assert len(final._form_tokens) == AppDictSession.MAX_FORM_TOKENS
    store.store.close()
