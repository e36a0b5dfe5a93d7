"""RedisStore behind Redis Sentinel, through redis-py's own Sentinel support.

A real sentinel (`redis-server --sentinel`) monitors the test's redis-server; the store
is given the clients that `Sentinel.master_for` returns, exactly as the README says.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from sessionguard.stores.redis import RedisStore
from tests.servers import RedisServer, free_port, stop, wait_for_port

pytestmark = pytest.mark.integration

MASTER = "sessions"


@pytest.fixture
def sentinel_port(redis_server: RedisServer, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    config = tmp_path / "sentinel.conf"  # the sentinel rewrites its config: it must be writable
    config.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor {MASTER} 127.0.0.1 {redis_server.port} 1\n"
    )
    log = tmp_path / "sentinel.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [redis_server.binary, str(config), "--sentinel"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process, log)
        yield port
    finally:
        stop(process)


def wait_for_master(sentinel: Sentinel) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sentinel.discover_master(MASTER):
            return
        time.sleep(0.05)  # pragma: no cover - the sentinel knows the master at once
    raise AssertionError("the sentinel never reported the master")


async def test_store_works_with_clients_from_sentinel(sentinel_port: int) -> None:
    sentinel = Sentinel([("127.0.0.1", sentinel_port)], socket_timeout=1.0)
    wait_for_master(sentinel)
    async_sentinel = AsyncSentinel([("127.0.0.1", sentinel_port)], socket_timeout=1.0)
    client = sentinel.master_for(MASTER, socket_timeout=1.0)
    async_client = async_sentinel.master_for(MASTER, socket_timeout=1.0)
    store = RedisStore(client=client, async_client=async_client, prefix="sentinel-test:")
    key = "0123456789abcdef0123456789abcdef01234567"
    try:
        version = store.save(key, b"through sentinel", expires_at=time.time() + 60)
        record = await store.aload(key)
        assert record is not None and record.payload == b"through sentinel"
        assert record.version == version
        assert await store.asave(key, b"again", expires_at=time.time() + 60) is not None
        again = store.load(key)
        assert again is not None and again.payload == b"again"
    finally:
        store.delete(key)
        client.close()
        await async_client.aclose()
        for connection in sentinel.sentinels:
            connection.close()
        for async_connection in async_sentinel.sentinels:
            await async_connection.aclose()
