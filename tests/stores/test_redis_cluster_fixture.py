"""The `redis_cluster` fixture gives a working Redis Cluster: 3 masters, 3 replicas."""

from __future__ import annotations

import pytest
import redis.asyncio.cluster
import redis.cluster

from tests.servers import RedisCluster

pytestmark = pytest.mark.integration

KEYS = 100


def test_three_masters_each_with_one_replica(redis_cluster: RedisCluster) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3
    replicas = [redis_cluster.replica_of(master) for master in masters]
    assert sorted(masters + replicas) == sorted(redis_cluster.ports)


def test_a_cluster_client_writes_and_reads_keys_on_every_master(
    redis_cluster: RedisCluster,
) -> None:
    with redis.cluster.RedisCluster.from_url(redis_cluster.url, socket_timeout=2.0) as client:
        keys = [f"fixture-test:{n}" for n in range(KEYS)]
        slots = {client.keyslot(key) for key in keys}
        owners = {client.nodes_manager.get_node_from_slot(slot).port for slot in slots}
        assert len(slots) > 90 and owners == set(redis_cluster.masters())
        for n, key in enumerate(keys):
            client.set(key, n, ex=60)
        assert [client.get(key) for key in keys] == [str(n).encode() for n in range(KEYS)]
        assert client.delete(*keys) == KEYS  # redis-py splits a multi-slot DEL per slot


async def test_the_asyncio_cluster_client_works(redis_cluster: RedisCluster) -> None:
    client = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url, socket_timeout=2.0)
    try:
        keys = [f"fixture-async-test:{n}" for n in range(KEYS)]
        for n, key in enumerate(keys):
            await client.set(key, n, ex=60)
        assert [await client.get(key) for key in keys] == [str(n).encode() for n in range(KEYS)]
        assert await client.delete(*keys) == KEYS
    finally:
        await client.aclose()
