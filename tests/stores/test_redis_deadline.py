"""`RedisStore` keeps its deadline in the session hash; the key's TTL only drops it on time.

What can change under the store, done for real on a real redis-server: `PERSIST` (a TTL
removed), `DUMP` + `RESTORE` with a TTL of 0 (how copying tools lose TTLs), and a restart
that loads an RDB snapshot (which keeps TTLs as absolute times).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from sessionguard.events import Event
from sessionguard.purging import purge_expired
from sessionguard.stores.base import key_hash
from sessionguard.stores.redis import RedisStore
from tests.servers import RedisServer

KEY = "0123456789abcdef0123456789abcdef01234567"
LIVE = "fedcba9876543210fedcba9876543210fedcba98"
PAYLOAD = b"SG session bytes"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url) as opened:
        yield opened


@pytest.fixture
async def store(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[RedisStore]:
    opened = RedisStore(redis_server.url, prefix=f"deadline-{request.node.name[-40:]}:")
    yield opened
    await opened.aclose()


def lose_ttl_by_persist(client: redis.Redis, name: str) -> None:
    assert client.persist(name)


def lose_ttl_by_restore(client: redis.Redis, name: str) -> None:
    dumped = client.dump(name)
    assert dumped is not None
    client.delete(name)
    client.restore(name, 0, dumped)  # ttl 0: "no expiry", as copying tools often do


LOSE_TTL = {"persist": lose_ttl_by_persist, "dump-restore-ttl-0": lose_ttl_by_restore}


@pytest.mark.parametrize("lose_ttl", LOSE_TTL.values(), ids=LOSE_TTL.keys())
def test_a_key_that_lost_its_ttl_still_expires_at_its_deadline(
    store: RedisStore, client: redis.Redis, lose_ttl: Callable[[redis.Redis, str], None]
) -> None:
    deadline = time.time() + 1.0
    version = store.save(KEY, PAYLOAD, expires_at=deadline)
    store.save(LIVE, PAYLOAD, expires_at=time.time() + 3600)
    lose_ttl(client, store.prefix + KEY)
    lose_ttl(client, store.prefix + LIVE)
    assert client.ttl(store.prefix + KEY) == -1  # no expiry left: Redis would keep it forever

    record = store.load(KEY)
    assert record is not None and (record.payload, record.expires_at) == (PAYLOAD, deadline)
    time.sleep(max(0.0, deadline - time.time()) + 0.2)

    assert store.load(KEY) is None
    assert store.touch(KEY, time.time() + 60) is False
    assert store.delete(KEY, expected_version=version) is False
    (found,) = [f for f in store.scan() if f.key == KEY]
    assert found.expired
    seen: list[Event] = []
    assert purge_expired(store, hooks=[seen.append]) == 1
    assert [(e.kind, e.session, e.reason) for e in seen] == [("expired", key_hash(KEY), "purged")]
    assert client.exists(store.prefix + KEY) == 0
    live = store.load(LIVE)
    assert live is not None and live.payload == PAYLOAD, "purge removed a live session"


async def test_the_async_half_agrees_about_a_key_that_lost_its_ttl(
    store: RedisStore, client: redis.Redis
) -> None:
    store.save(KEY, PAYLOAD, expires_at=time.time() + 0.5)
    client.persist(store.prefix + KEY)
    time.sleep(0.7)

    assert await store.aload(KEY) is None
    assert await store.atouch(KEY, time.time() + 60) is False
    # A new session may take the id: the stale hash is not live, so create succeeds.
    assert await store.asave(KEY, b"new", expires_at=time.time() + 60, expected_version=0)
    assert await store.apurge_expired() == 0


@pytest.mark.integration
def test_an_rdb_restore_keeps_each_deadline_and_ttl(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    server = RedisServer(redis_server.binary, tmp_path)
    server.start()
    try:
        store = RedisStore(server.url)
        deadline = time.time() + 3600
        store.save(KEY, PAYLOAD, expires_at=deadline)
        with redis.Redis.from_url(server.url) as admin:
            admin.save()  # dump.rdb in the server's directory
        store.close()
        server.kill()
        server.start()  # loads dump.rdb

        record = store.load(KEY)
        assert record is not None and (record.payload, record.expires_at) == (PAYLOAD, deadline)
        with redis.Redis.from_url(server.url) as admin:
            assert 3500 < admin.ttl(store.prefix + KEY) <= 3600
        store.close()
    finally:
        server.kill()
