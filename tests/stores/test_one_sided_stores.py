"""Redis and SQL stores given only one client or engine: that side works, the other says
what to pass; and both sides of each store run the same operation the same way.

Each of these stores writes an operation once and runs it on its blocking or its
asyncio client, so what one side writes, the other reads, purges and counts alike.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from sessionguard.errors import ConfigurationError
from sessionguard.stores.redis import RedisStore
from sessionguard.stores.sql import SQLStore
from tests.servers import RedisServer

KEY = "0123456789abcdef0123456789abcdef01234567"
LOST = "fedcba9876543210fedcba9876543210fedcba98"


async def test_redis_store_with_only_an_async_client(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    store = RedisStore(async_client=client, prefix=f"one-sided:{uuid.uuid4().hex}:")
    try:
        version = await store.asave(KEY, b"payload", expires_at=time.time() + 60)
        record = await store.aload(KEY)
        assert record is not None and record.version == version
        with pytest.raises(ConfigurationError, match="^this RedisStore was given only async_cl"):
            store.load(KEY)
        await store.aclose()
        assert await client.ping()  # given, so not closed by the store
    finally:
        await client.aclose()


async def test_redis_store_with_only_a_client(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        store = RedisStore(client=client, prefix=f"one-sided:{uuid.uuid4().hex}:")
        assert store.save(KEY, b"payload", expires_at=time.time() + 60) is not None
        with pytest.raises(ConfigurationError, match="^this RedisStore was given only client;"):
            await store.aload(KEY)
        store.close()
        assert client.ping()


async def test_both_sides_of_a_redis_store_purge_a_key_that_lost_its_ttl(
    redis_server: RedisServer,
) -> None:
    store = RedisStore(redis_server.url, prefix=f"one-sided:{uuid.uuid4().hex}:")
    with redis.Redis.from_url(redis_server.url) as admin:
        for mode in ("sync", "async"):
            store.save(LOST, b"stale", expires_at=time.time() + 0.2)
            store.save(KEY, b"live", expires_at=time.time() + 60)
            admin.persist(store.prefix + LOST)  # Redis would keep it forever
            time.sleep(0.3)

            if mode == "sync":
                assert [step.removed for step in store.purge_expired_batches()] == [1]
            else:
                assert await store.apurge_expired() == 1

            assert admin.exists(store.prefix + LOST) == 0
            assert (await store.aload(KEY)) == store.load(KEY) is not None
    assert await store.apurge_expired() == 0
    await store.aclose()


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> AsyncIterator[str]:
    yield f"sqlite:///{tmp_path / 'sessions.db'}"


async def test_sql_store_with_only_an_async_engine(sqlite_url: str) -> None:
    engine = create_async_engine(sqlite_url.replace("sqlite:", "sqlite+aiosqlite:"))
    store = SQLStore(async_engine=engine)
    try:
        version = await store.asave(KEY, b"payload", expires_at=time.time() + 60)
        record = await store.aload(KEY)
        assert record is not None and record.version == version
        await store.asave(LOST, b"old", expires_at=time.time() - 1)
        assert await store.apurge_expired() == 1
        with pytest.raises(ConfigurationError, match="^this SQLStore was given only async_engine;"):
            store.load(KEY)
        await store.aclose()
        async with engine.connect() as conn:  # given, so not disposed by the store
            assert (
                await conn.execute(sa.text("select count(*) from sessionguard_sessions"))
            ).scalar() == 1
    finally:
        await engine.dispose()


async def test_sql_store_with_only_an_engine(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    store = SQLStore(engine=engine, create_table=False)
    try:
        store.create()
        assert store.save(KEY, b"payload", expires_at=time.time() + 60) is not None
        with pytest.raises(ConfigurationError, match="^this SQLStore was given only engine;"):
            await store.aload(KEY)
        store.close()
        assert store.load(KEY) is not None  # given, so still usable
    finally:
        engine.dispose()


async def test_both_sides_of_a_sql_store_purge_and_count_alike(sqlite_url: str) -> None:
    store = SQLStore(sqlite_url)
    now = time.time()
    for i in range(5):
        await store.asave(f"old-{i}", b"old", expires_at=now - 1)
    steps = list(store.purge_expired_batches(batch_size=2))
    assert [(s.removed, s.done, s.total) for s in steps] == [(2, 2, 5), (2, 4, 5), (1, 5, 5)]
    for i in range(3):
        store.save(f"old-{i}", b"old", expires_at=now - 1)
    store.save(KEY, b"live", expires_at=now + 60)
    assert await store.apurge_expired() == 3
    assert store.purge_expired() == 0
    assert (await store.aload(KEY)) == store.load(KEY) is not None
    await store.aclose()
