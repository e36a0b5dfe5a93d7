"""Stores the CLI tests run against, each addressed the way an operator would: by TARGET.

`target` is parametrized over a FileStore directory, SQLite, PostgreSQL (a fresh
database per test on the session's server), Redis (a database of its own, flushed
first) and the session's Redis Cluster (flushed first). Helpers shared by the test
modules live in `tests/cli/plant.py`.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
import redis

from sessionguard.cli import main, open_store
from sessionguard.stores import Store
from sessionguard.stores.base import ScannableStore, StoredRecord
from sessionguard.stores.sql import SQLStore

REDIS_DB = 9  # the contract tests use database 0 with per-test prefixes


@dataclass
class Target:
    """A store as the command line sees it (`url`) and as the test plants into it (`store`)."""

    kind: str
    url: str
    store: Store

    @property
    def expires_by_itself(self) -> bool:
        # Redis drops expired keys: nothing for purge to find.
        return self.kind.startswith("redis")

    def store_scan(self) -> list[StoredRecord]:
        assert isinstance(self.store, ScannableStore)
        return list(self.store.scan())


@dataclass
class Ran:
    status: int
    stdout: str
    stderr: str


@pytest.fixture(
    params=[
        "file",
        "sqlite",
        "postgres",
        "redis",
        pytest.param("redis-cluster", marks=pytest.mark.integration),  # six servers
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    kind: str = request.param
    if kind == "file":
        url = str(tmp_path / "sessions")
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'sessions.db'}"
    elif kind == "postgres":
        server = request.getfixturevalue("postgres_server")
        name = f"cli_{uuid.uuid4().hex[:12]}"
        server.sql(f"CREATE DATABASE {name}")
        url = server.url.rsplit("/", 1)[0] + "/" + name
    elif kind == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        for port in cluster.masters():  # the cluster is the session's: start it empty
            with redis.Redis(port=port) as client:
                client.flushall()
        url = cluster.url.replace("redis://", "redis+cluster://", 1)
    else:
        server = request.getfixturevalue("redis_server")
        url = f"redis://127.0.0.1:{server.port}/{REDIS_DB}"
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    store = open_store(url)
    if isinstance(store, SQLStore):
        store.create()  # as the app would on its first request; the commands never create it
    yield Target(kind, url, store)
    store.close()


class RunCLI(Protocol):
    def __call__(self, *argv: str) -> Ran: ...


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> RunCLI:
    """Run `sessionguard ARGV...` in this process; return its status and output."""

    def call(*argv: str) -> Ran:
        capsys.readouterr()
        out = io.StringIO()
        status = main(list(argv), out=out)
        return Ran(status, out.getvalue(), capsys.readouterr().err)

    return call
