"""A save whose reply is lost (the connection drops after Redis ran it) and that the
client sends again counts once: each save carries a token, and a retry of a write that
already happened answers with its version. Without that, the retried compare-and-swap
misses against its own write and the caller applies its change a second time (an item
added twice, a counter bumped twice).

Through a real proxy in front of a real redis-server, with redis-py's own retry."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from sessionguard.stores.redis import RedisStore
from tests.faultproxy import FaultProxy
from tests.servers import RedisServer

KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(redis_server.port)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
async def store(proxy: FaultProxy) -> AsyncIterator[RedisStore]:
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=f"lost-{time.time_ns()}:")
    yield store
    await store.aclose()


def test_a_save_retried_after_its_reply_was_lost_is_applied_once(
    store: RedisStore, proxy: FaultProxy
) -> None:
    first = store.save(KEY, b"one", expires_at=time.time() + 60)
    assert first is not None

    proxy.lose_next_reply()
    second = store.save(KEY, b"two", expires_at=time.time() + 60, expected_version=first)

    assert proxy.lost == 1  # the reply was lost, and redis-py sent the command again
    assert second == first + 1  # the retry found its own write instead of missing it
    record = store.load(KEY)
    assert record is not None and (record.payload, record.version) == (b"two", second)


async def test_the_async_client_too(store: RedisStore, proxy: FaultProxy) -> None:
    first = await store.asave(KEY, b"one", expires_at=time.time() + 60)
    assert first is not None

    proxy.lose_next_reply()
    second = await store.asave(KEY, b"two", expires_at=time.time() + 60, expected_version=first)

    assert proxy.lost == 1
    assert second == first + 1
