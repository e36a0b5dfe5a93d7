"""Real servers for the tests: redis-server and PostgreSQL on free loopback ports.

Each is started once per test session in a temporary directory and stopped at the end.
A missing server binary skips its tests locally, with the command that installs it;
with `SESSIONGUARD_REQUIRE_SERVERS=1` (set by `.ci/run`) it fails them instead, so CI
can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, RedisCluster, RedisServer, postgres_bindir, stop

REQUIRE_SERVERS = os.environ.get("SESSIONGUARD_REQUIRE_SERVERS") == "1"


def missing(what: str, install: str) -> None:
    message = f"{what} is not installed; install it with: {install}"
    if REQUIRE_SERVERS:
        pytest.fail(message + " (SESSIONGUARD_REQUIRE_SERVERS=1 forbids skipping)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server", "apt-get install redis-server")
        raise AssertionError("unreachable")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    stop(server.process)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster of 3 masters and 3 replicas, ready: every slot served."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        missing("redis-server and redis-cli", "apt-get install redis-server")
        raise AssertionError("unreachable")
    cluster = RedisCluster(binary, cli, tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()  # stops what it started if it fails
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_cluster(redis_cluster: RedisCluster, tmp_path: Path) -> Iterator[RedisCluster]:
    """A Redis Cluster of this test's own, to kill or freeze nodes of without harming any
    other test."""
    cluster = RedisCluster(redis_cluster.binary, redis_cluster.cli, tmp_path)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_redis(tmp_path: Path, redis_server: RedisServer) -> Iterator[RedisServer]:
    """A redis-server of this test's own (so killing it harms no other test), with AOF on."""
    server = RedisServer(redis_server.binary, tmp_path, persistent=True)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None or shutil.which("psql") is None:
        missing("PostgreSQL server", "apt-get install postgresql")
        raise AssertionError("unreachable")
    # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
    directory = Path(tempfile.mkdtemp(prefix="sessionguard-postgres-"))
    try:
        server = PostgresServer(bindir, directory)
        server.init()
        server.start()
        yield server
        stop(server.process, signal.SIGINT)  # "fast" shutdown
    finally:
        shutil.rmtree(directory, ignore_errors=True)
