"""A Redis master killed under a same-session burst, on a real Redis Cluster and behind a
real Sentinel: with `replicas=1` no write the app acknowledged is lost.

Redis replication is asynchronous: a master can acknowledge a save and die before its
replica has it, and the promoted replica then never had it. With `replicas=1` a save
answers only once Redis WAIT says a replica has it, so whatever the app acknowledged is
on the replica that takes over. Requests meanwhile get 503 with Retry-After, and succeed
again, without restarting the app, once the failover is done and the new master has a
replica again (here: the killed node restarted, as its supervisor would).
(The loss without `replicas` is measured by the failover benchmark, beside this.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.sentinel import Sentinel

from sessionguard.errors import StoreUnavailableError
from sessionguard.stores.redis import RedisStore
from tests.failover import (
    kill_master_while_its_replica_lags,
    kill_master_while_replicas_lag,
    run_burst,
    sentinel_group,
    wait_for_replicas,
)
from tests.servers import RedisCluster, RedisServer

pytestmark = pytest.mark.integration

#: From the master's death to the first write served again: the cluster's node timeout
#: (1 s) and election, plus the killed node's restart and resync. A bound for this
#: machine; the README states it.
RECOVERY_BOUND = 15.0


def test_a_killed_cluster_master_loses_no_acknowledged_write_with_replicas(
    own_cluster: RedisCluster,
) -> None:
    # The replica lags for a second before the master dies: without `replicas`, what the
    # master acknowledged meanwhile is not on the replica that takes over (the failover
    # benchmark measures that loss).
    prefix = "failover:"
    store = RedisStore(own_cluster.url, cluster=True, prefix=prefix, replicas=1)
    breaks = kill_master_while_its_replica_lags(own_cluster, prefix)
    try:
        burst, final, broke_at = run_burst(
            store, clients=6, writes_per_client=400, breaks=breaks, break_after=60
        )
    finally:
        store.close()

    assert burst.lost(final) == []  # every acknowledged write survived the failover
    assert len(burst.acknowledged) > 60
    assert burst.refused and all(s == 503 and r == "5" for _, s, r in burst.refused)
    recovered = burst.recovered_after(broke_at)
    assert recovered is not None and recovered < RECOVERY_BOUND, recovered


def first_confirmed_save(store: RedisStore, key: str) -> int | None:
    """A first save, once the replica confirms writes (a replica that has just come
    online may not answer the first WAIT in time)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return store.save(key, b"v1", expires_at=time.time() + 60)
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def sentinel_servers(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[list[RedisServer], int]]:
    """A master with two replicas and a sentinel (see `tests.failover.sentinel_group`)."""
    with sentinel_group(redis_server.binary, tmp_path) as group:
        yield group


def test_a_failed_over_sentinel_master_loses_no_acknowledged_write_with_replicas(
    sentinel_servers: tuple[list[RedisServer], int],
) -> None:
    (master, *replicas), port = sentinel_servers
    sentinel = Sentinel([("127.0.0.1", port)], socket_timeout=1.0)
    client = sentinel.master_for("sessions", socket_timeout=1.0)
    store = RedisStore(client=client, prefix="sentinel-failover:", replicas=1)

    burst, final, broke_at = run_burst(
        store,
        clients=6,
        writes_per_client=400,
        breaks=lambda: kill_master_while_replicas_lag(master, replicas),
        break_after=60,
    )

    assert burst.lost(final) == []
    assert sentinel.discover_master("sessions")[1] != master.port  # a replica took over
    assert all(status == 503 and retry == "5" for _, status, retry in burst.refused)
    recovered = burst.recovered_after(broke_at)
    assert recovered is not None and recovered < RECOVERY_BOUND, recovered
    client.close()


def test_replicas_that_cannot_confirm_answer_503_within_the_timeout(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master = RedisServer(
        redis_server.binary, tmp_path / "m", extra_args=["--repl-diskless-sync-delay", "0"]
    )
    master.start()
    replica = RedisServer(
        redis_server.binary,
        tmp_path / "r",
        extra_args=[
            "--replicaof",
            "127.0.0.1",
            str(master.port),
            "--repl-diskless-sync-delay",
            "0",
        ],
    )
    replica.start()
    wait_for_replicas(master, 1)
    store = RedisStore(master.url, replicas=1, replica_timeout=0.3)
    key = "0123456789abcdef0123456789abcdef01234567"
    try:
        version = first_confirmed_save(store, key)
        replica.kill()

        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="reached 0 of the 1 replica"):
            store.save(key, b"v2", expires_at=time.time() + 60, expected_version=version)
        assert time.monotonic() - started < 1.0  # the 0.3 s WAIT, not a socket timeout
        # A refresh waits for no replica (losing one only shortens a session); a logout does.
        assert store.touch(key, time.time() + 120)
        with pytest.raises(StoreUnavailableError, match="reached 0 of the 1 replica"):
            store.delete(key)
    finally:
        store.close()
        master.kill()
