"""`RedisStore` on a real Redis Cluster: what the store contract does not show.

Every key a script changes together (a session and its user's set) is in one hash slot,
so no write is ever CROSSSLOT; sessions still spread over every master; and listing a
user finds their sessions wherever they are. (The whole store contract, the per-user
index, encryption and hashed ids also run on the cluster: see the `redis-cluster`
backend in test_contract.py.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from sessionguard.errors import ConfigurationError
from sessionguard.stores.redis import RedisStore
from tests.servers import RedisCluster

pytestmark = pytest.mark.integration

USER = "alice@example.com"


@pytest.fixture
def store(redis_cluster: RedisCluster) -> Iterator[RedisStore]:
    store = RedisStore(redis_cluster.url, cluster=True, prefix=f"spread-{uuid.uuid4().hex}:")
    yield store
    store.close()


def session_keys(n: int) -> list[str]:
    return [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(n)]


def test_a_session_and_its_users_set_share_a_slot_and_sessions_spread_over_every_master(
    store: RedisStore, redis_cluster: RedisCluster
) -> None:
    keys = session_keys(120)
    for key in keys:
        store.save(key, b"data", expires_at=time.time() + 60, owner=USER)

    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        names = [n.decode() for n in client.scan_iter(match=f"{store.prefix}*", count=1000)]
        sets = [n for n in names if "user:" in n]
        records = [n for n in names if "user:" not in n]
        set_slots = {key_slot(name.encode()) for name in sets}
        masters = {client.get_node_from_key(name).port for name in records}  # type: ignore[no-untyped-call]
    finally:
        client.close()

    assert len(records) == len(keys) and len(sets) > 1  # one set per bucket in use
    assert all(key_slot(name.encode()) in set_slots for name in records)
    assert masters == set(redis_cluster.masters())
    assert sorted(store.sessions_of(USER)) == sorted(keys)


async def test_listing_and_revoking_a_users_sessions_reaches_every_master(
    store: RedisStore,
) -> None:
    keys = session_keys(40)
    for key in keys:
        await store.asave(key, b"data", expires_at=time.time() + 60, owner=USER)
    for key in keys[:30]:
        await store.adelete(key)

    assert sorted(await store.asessions_of(USER)) == sorted(keys[30:])
    await store.aclose()


def test_a_prefix_with_a_hash_tag_is_refused(redis_cluster: RedisCluster) -> None:
    # A tag in the prefix would put every session in one slot, on one master.
    with pytest.raises(ConfigurationError, match="braces"):
        RedisStore(redis_cluster.url, cluster=True, prefix="{app}:")


def test_a_cluster_client_with_a_plain_one_is_refused(redis_cluster: RedisCluster) -> None:
    cluster_client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    plain = redis.asyncio.Redis(port=redis_cluster.ports[0])
    try:
        with pytest.raises(ConfigurationError, match="same kind"):
            RedisStore(client=cluster_client, async_client=plain)
    finally:
        cluster_client.close()


async def test_ready_cluster_clients_serve_both_apis(redis_cluster: RedisCluster) -> None:
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    async_client = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url)
    store = RedisStore(client=client, async_client=async_client, prefix="ready-clients:")
    (key,) = session_keys(1)
    try:
        version = store.save(key, b"from WSGI", expires_at=time.time() + 60, owner=USER)
        record = await store.aload(key)
        assert record is not None and (record.payload, record.version) == (b"from WSGI", version)
        assert await store.asessions_of(USER) == [key]
    finally:
        await store.aclose()  # the clients are the caller's to close: still usable
        assert client.ping()
        client.close()
        await async_client.aclose()


async def test_replicated_writes_reach_a_replica_from_both_clients_on_first_use(
    redis_cluster: RedisCluster,
) -> None:
    store = RedisStore(
        redis_cluster.url, cluster=True, prefix=f"replicated-{uuid.uuid4().hex}:", replicas=1
    )
    first, second = session_keys(2)
    try:
        # Each client's very first command is a replicated write: WAIT must find its master.
        assert await store.asave(first, b"async", expires_at=time.time() + 60) == 1
        assert store.save(second, b"sync", expires_at=time.time() + 60) == 1
        assert await store.adelete(first) and store.delete(second)
    finally:
        await store.aclose()
