"""The per-user index under logins and logouts of one session set from several processes.

Four processes, each with its own core and store object on one shared FileStore
directory, SQL database, Redis or Redis Cluster, log users in and out of the same six
sessions (so their saves race and merge) for a while. Afterwards every live record is
indexed under exactly the user its data names: no entry missing, none dangling.
"""

from __future__ import annotations

import multiprocessing
import random
import uuid
from pathlib import Path

import pytest
import redis

from sessionguard.codec import decode
from sessionguard.driver import run_sync
from sessionguard.options import build_core
from sessionguard.policy import ErrorResponse
from sessionguard.session import Session
from sessionguard.stores import FileStore
from sessionguard.stores.base import BaseStore
from sessionguard.stores.sql import SQLStore
from sessionguard.target import open_store

pytestmark = pytest.mark.integration

SECRET = "user-index-processes"
USERS = ["alice", "bob", "carol"]
ROUNDS = 150
PROCESSES = 4
REDIS_DB = 6  # a database of this test's own, flushed first


def _work(target: str, cookies: list[str], seed: int) -> tuple[int, set[int]]:
    """One process: ROUNDS logins and logouts on random sessions; returns how many saves
    were refused, and which sessions (by `n`) it changed."""
    store = open_store(target)
    core = build_core(SECRET, user_key="user")
    rng = random.Random(seed)
    refused, touched = 0, set()
    try:
        for _ in range(ROUNDS):
            session = run_sync(core.open(rng.choice(cookies)), store)
            assert isinstance(session, Session)
            touched.add(session["n"])
            if rng.random() < 0.3:
                session.pop("user", None)  # a logout that keeps the session
            else:
                session["user"] = rng.choice(USERS)  # a login
            session[f"seen-{seed}"] = True
            if isinstance(run_sync(core.commit(session), store), ErrorResponse):
                refused += 1
    finally:
        store.close()
    return refused, touched


def target_of(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "file":
        return str(tmp_path / "sessions")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    if kind == "postgres":
        server = request.getfixturevalue("postgres_server")
        name = f"index_{uuid.uuid4().hex[:12]}"
        server.sql(f"CREATE DATABASE {name}")
        return str(server.url.rsplit("/", 1)[0] + "/" + name)
    if kind == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        for port in cluster.masters():  # the session's cluster: start it empty
            with redis.Redis(port=port) as client:
                client.flushall()
        return str(cluster.url).replace("redis://", "redis+cluster://", 1)
    server = request.getfixturevalue("redis_server")
    url = f"redis://127.0.0.1:{server.port}/{REDIS_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.mark.parametrize("kind", ["file", "sqlite", "postgres", "redis", "redis-cluster"])
def test_racing_logins_and_logouts_leave_no_entry_missing_or_dangling(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = target_of(kind, tmp_path, request)
    store = open_store(target)
    assert isinstance(store, BaseStore)
    if isinstance(store, SQLStore):
        store.create()
    core = build_core(SECRET, user_key="user")
    cookies = []
    for n in range(6):
        session = run_sync(core.open(None), store)
        assert isinstance(session, Session)
        session["n"] = n
        sent = run_sync(core.commit(session), store)
        assert not isinstance(sent, ErrorResponse)
        cookies.append(sent[0].split(";", 1)[0])

    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        results = pool.starmap(_work, [(target, cookies, seed) for seed in range(PROCESSES)])

    assert sum(refused for refused, _ in results) == 0
    owners: dict[str, str | None] = {}
    for found in store.scan():
        data = decode(found.record.payload).data
        user = data.get("user")
        owners[found.key] = user if isinstance(user, str) else None
        # Every process's change reached every session it touched: nothing was lost.
        writers = {seed for seed, (_, touched) in enumerate(results) if data["n"] in touched}
        assert writers and all(data.get(f"seen-{seed}") is True for seed in writers)
    assert len(owners) == 6
    for user in USERS:
        assert sorted(store.sessions_of(user)) == sorted(k for k, o in owners.items() if o == user)
    if isinstance(store, FileStore):
        entries = list(Path(store.directory, ".users").rglob("*"))
        listed = [e for e in entries if e.is_file()]
        assert len(listed) == sum(1 for o in owners.values() if o is not None)
    store.close()
