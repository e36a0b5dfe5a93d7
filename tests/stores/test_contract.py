"""The store contract (`sessionguard.stores.base`), run against every store, sync and async.

Each test body is written once against `StoreAPI`, an awaitable face that calls either
the blocking methods or their `a`-twins. To put a new store under the contract, add
one `Backend` to `BACKENDS`. Stores: memory, file (durable and not), Redis, SQLite and
PostgreSQL; the Redis and PostgreSQL ones run against the real servers that
`tests/conftest.py` starts.

Tests marked `moves_time` move the fake clock; they run only on backends whose expiry
follows the store's `clock=` (Redis expires keys by its own clock, so it is checked
with deadlines that have already passed instead).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from sessionguard.driver import run_async, run_sync
from sessionguard.ops import Flow
from sessionguard.options import build_core
from sessionguard.policy import CorruptionPolicy, ErrorResponse
from sessionguard.session import Session
from sessionguard.stores import FileStore, MemoryStore, Record, Store
from sessionguard.stores.base import ABSENT, Updater, Write
from sessionguard.stores.redis import RedisStore
from sessionguard.stores.sql import SQLStore
from tests.clock import FakeClock
from tests.trees import tree


@dataclass(frozen=True)
class Backend:
    id: str
    factory: Callable[[Env], Store]
    follows_clock: bool = True
    marks: tuple[pytest.MarkDecorator, ...] = ()


def redis_store(env: Env) -> Store:
    server = env.request.getfixturevalue("redis_server")
    return RedisStore(server.url, prefix=f"contract:{uuid.uuid4().hex}:")


def redis_cluster_store(env: Env) -> Store:
    cluster = env.request.getfixturevalue("redis_cluster")
    return RedisStore(cluster.url, cluster=True, prefix=f"contract-{uuid.uuid4().hex}:")


def sqlite_store(env: Env) -> Store:
    env.directory.mkdir(parents=True, exist_ok=True)
    return SQLStore(f"sqlite:///{env.directory / 'sessions.db'}", clock=env.clock)


def postgres_store(env: Env) -> Store:
    server = env.request.getfixturevalue("postgres_server")
    return SQLStore(server.url, table_name=f"contract_{uuid.uuid4().hex[:16]}", clock=env.clock)


@dataclass(frozen=True)
class Env:
    """What a backend factory may use: the test's request (for server fixtures), a
    directory of its own and the clock it must read time from."""

    request: pytest.FixtureRequest
    directory: Path
    clock: FakeClock


BACKENDS = [
    Backend("memory", lambda env: MemoryStore(clock=env.clock)),
    Backend("file-durable", lambda env: FileStore(env.directory, clock=env.clock)),
    Backend("file", lambda env: FileStore(env.directory, durable=False, clock=env.clock)),
    Backend("redis", redis_store, follows_clock=False),
    # Six servers to start: with the integration tests, out of `make test-unit`.
    Backend(
        "redis-cluster", redis_cluster_store, follows_clock=False, marks=(pytest.mark.integration,)
    ),
    Backend("sqlite", sqlite_store),
    Backend("postgres", postgres_store),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store" not in metafunc.fixturenames:
        return
    moves_time = metafunc.definition.get_closest_marker("moves_time") is not None
    chosen = [b for b in BACKENDS if b.follows_clock or not moves_time]
    params = [pytest.param(b.factory, id=b.id, marks=b.marks) for b in chosen]
    metafunc.parametrize("store", params, indirect=True)


KEY = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
#: Every byte value, NUL and high bytes included: stores move opaque bytes.
BINARY = bytes(range(256)) * 3


@pytest.fixture
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Store]:
    factory: Callable[[Env], Store] = request.param
    opened = factory(Env(request, tmp_path / "sessions", clock))
    yield opened
    await opened.aclose()


class StoreAPI:
    """The store's sync or async methods behind one awaitable interface."""

    def __init__(self, store: Store, mode: Literal["sync", "async"]) -> None:
        self.store = store
        self.mode = mode

    async def load(self, key: str) -> Record | None:
        if self.mode == "sync":
            return self.store.load(key)
        return await self.store.aload(key)

    async def save(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        if self.mode == "sync":
            return self.store.save(
                key, payload, expires_at=expires_at, expected_version=expected_version
            )
        return await self.store.asave(
            key, payload, expires_at=expires_at, expected_version=expected_version
        )

    async def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        if self.mode == "sync":
            return self.store.delete(key, expected_version=expected_version)
        return await self.store.adelete(key, expected_version=expected_version)

    async def touch(
        self, key: str, expires_at: float, *, expected_version: int | None = None
    ) -> bool:
        if self.mode == "sync":
            return self.store.touch(key, expires_at, expected_version=expected_version)
        return await self.store.atouch(key, expires_at, expected_version=expected_version)

    async def update(self, key: str, updater: Updater) -> int | None:
        if self.mode == "sync":
            return self.store.update(key, updater)
        return await self.store.aupdate(key, updater)

    async def purge_expired(self) -> int:
        if self.mode == "sync":
            return self.store.purge_expired()
        return await self.store.apurge_expired()

    async def run_concurrently(
        self, worker: Callable[[int], Coroutine[Any, Any, None]], count: int, *, timeout: float = 60
    ) -> None:
        """Run `worker(0)` .. `worker(count - 1)` at once: on `count` threads when sync
        (each thread drives its worker in its own event loop, so every store call is a
        blocking call on that thread), as `count` tasks on this loop when async."""
        if self.mode == "sync":
            with ThreadPoolExecutor(count) as pool:
                futures = [pool.submit(asyncio.run, worker(i)) for i in range(count)]
                waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
                await asyncio.wait_for(waiting, timeout)
        else:
            await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(count))), timeout)

    def barrier(self, parties: int) -> Callable[[], Awaitable[None]]:
        """`wait()` for the workers of `run_concurrently`: it returns once `parties` of them
        have called it, so whatever each did before provably happened before anything
        any of them does after. Bounded in time, so a broken test fails instead of hanging."""
        if self.mode == "sync":
            threads = threading.Barrier(parties, timeout=BARRIER_TIMEOUT)

            async def wait_on_thread() -> None:
                threads.wait()  # blocks this worker's own thread, whose loop runs nothing else

            return wait_on_thread
        tasks = asyncio.Barrier(parties)

        async def wait_on_loop() -> None:
            await asyncio.wait_for(tasks.wait(), BARRIER_TIMEOUT)

        return wait_on_loop


#: Seconds a barrier waits for the other workers; reached only when a test is broken.
BARRIER_TIMEOUT = 30.0


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, store: Store) -> StoreAPI:
    return StoreAPI(store, request.param)


async def test_saved_payload_loads_back_byte_for_byte(api: StoreAPI, clock: FakeClock) -> None:
    version = await api.save(KEY, BINARY, expires_at=clock.now + 60)

    record = await api.load(KEY)

    assert version is not None and version != ABSENT
    assert record == Record(BINARY, version, clock.now + 60)


async def test_load_of_missing_key_is_none(api: StoreAPI) -> None:
    assert await api.load(KEY) is None


async def test_save_of_another_payload_returns_a_new_version(
    api: StoreAPI, clock: FakeClock
) -> None:
    first = await api.save(KEY, b"one", expires_at=clock.now + 60)
    second = await api.save(KEY, b"two", expires_at=clock.now + 60)

    assert first is not None and second is not None
    assert first != second
    record = await api.load(KEY)
    assert record is not None and (record.payload, record.version) == (b"two", second)


async def test_save_expecting_absent_creates_only_if_absent(
    api: StoreAPI, clock: FakeClock
) -> None:
    created = await api.save(KEY, b"first", expires_at=clock.now + 60, expected_version=ABSENT)
    again = await api.save(KEY, b"second", expires_at=clock.now + 60, expected_version=ABSENT)

    assert created is not None
    assert again is None
    assert await api.load(KEY) == Record(b"first", created, clock.now + 60)


async def test_save_expecting_a_version_succeeds_only_while_unchanged(
    api: StoreAPI, clock: FakeClock
) -> None:
    v1 = await api.save(KEY, b"v1", expires_at=clock.now + 60)
    v2 = await api.save(KEY, b"v2", expires_at=clock.now + 60, expected_version=v1)
    stale = await api.save(KEY, b"v3", expires_at=clock.now + 90, expected_version=v1)

    assert v1 is not None and v2 is not None and v2 != v1
    assert stale is None
    assert await api.load(KEY) == Record(b"v2", v2, clock.now + 60)


async def test_save_expecting_a_version_of_a_missing_key_misses(
    api: StoreAPI, clock: FakeClock
) -> None:
    version = await api.save(KEY, b"gone", expires_at=clock.now + 60)
    assert version is not None
    assert await api.delete(KEY)

    assert await api.save(KEY, b"back", expires_at=clock.now + 60, expected_version=version) is None
    assert await api.load(KEY) is None


async def test_unconditional_save_creates_and_overwrites(api: StoreAPI, clock: FakeClock) -> None:
    created = await api.save(KEY, b"a", expires_at=clock.now + 60)
    overwritten = await api.save(KEY, b"b", expires_at=clock.now + 30)

    assert created is not None and overwritten is not None
    assert await api.load(KEY) == Record(b"b", overwritten, clock.now + 30)


async def test_delete_removes_the_record_and_says_so(api: StoreAPI, clock: FakeClock) -> None:
    await api.save(KEY, b"doomed", expires_at=clock.now + 60)
    await api.save(OTHER, b"kept", expires_at=clock.now + 60)

    assert await api.delete(KEY) is True
    assert await api.delete(KEY) is False
    assert await api.load(KEY) is None
    other = await api.load(OTHER)
    assert other is not None and other.payload == b"kept"


async def test_delete_with_expected_version_removes_only_that_version(
    api: StoreAPI, clock: FakeClock
) -> None:
    old = await api.save(KEY, b"old", expires_at=clock.now + 60)
    new = await api.save(KEY, b"new", expires_at=clock.now + 60)
    assert old is not None and new is not None

    assert await api.delete(KEY, expected_version=old) is False
    assert await api.load(KEY) == Record(b"new", new, clock.now + 60)
    assert await api.delete(KEY, expected_version=new) is True
    assert await api.load(KEY) is None
    assert await api.delete(KEY, expected_version=new) is False


@pytest.mark.moves_time
async def test_touch_moves_the_deadline_and_keeps_payload_and_version(
    api: StoreAPI, clock: FakeClock
) -> None:
    version = await api.save(KEY, BINARY, expires_at=clock.now + 10)
    assert version is not None

    assert await api.touch(KEY, clock.now + 100) is True
    clock.advance(50)  # past the old deadline, before the new one

    assert await api.load(KEY) == Record(BINARY, version, clock.now + 50)


async def test_touch_with_a_version_moves_only_that_version_of_the_record(
    api: StoreAPI, clock: FakeClock
) -> None:
    old = await api.save(KEY, b"read by a slow request", expires_at=clock.now + 10)
    new = await api.save(KEY, b"pointer", expires_at=clock.now + 30)
    assert old is not None and new is not None and old != new

    # The slow read-only request refreshes what it read: a record that has changed since
    # (a regenerate's forward pointer) keeps its own deadline.
    assert await api.touch(KEY, clock.now + 1000, expected_version=old) is False
    assert await api.load(KEY) == Record(b"pointer", new, clock.now + 30)
    assert await api.touch(KEY, clock.now + 60, expected_version=new) is True
    assert await api.load(KEY) == Record(b"pointer", new, clock.now + 60)
    assert await api.touch(OTHER, clock.now + 60, expected_version=new) is False


async def test_touch_of_a_missing_key_is_false_and_creates_nothing(
    api: StoreAPI, clock: FakeClock
) -> None:
    assert await api.touch(KEY, clock.now + 100) is False
    assert await api.load(KEY) is None


@pytest.mark.moves_time
async def test_touch_of_an_expired_record_is_false_and_does_not_revive_it(
    api: StoreAPI, clock: FakeClock
) -> None:
    await api.save(KEY, b"stale", expires_at=clock.now + 10)
    clock.advance(11)

    assert await api.touch(KEY, clock.now + 100) is False
    assert await api.load(KEY) is None


@pytest.mark.moves_time
async def test_record_past_its_deadline_loads_as_none(api: StoreAPI, clock: FakeClock) -> None:
    await api.save(KEY, b"short-lived", expires_at=clock.now + 10)

    clock.advance(9)
    live = await api.load(KEY)
    clock.advance(2)

    assert live is not None and live.payload == b"short-lived"
    assert await api.load(KEY) is None


@pytest.mark.moves_time
async def test_expired_record_counts_as_absent(api: StoreAPI, clock: FakeClock) -> None:
    old = await api.save(KEY, b"expired", expires_at=clock.now + 10)
    clock.advance(11)

    assert await api.delete(KEY, expected_version=old) is False
    assert await api.delete(KEY) is False
    assert await api.save(KEY, b"x", expires_at=clock.now + 10, expected_version=old) is None
    created = await api.save(KEY, b"fresh", expires_at=clock.now + 10, expected_version=ABSENT)
    assert created is not None
    assert await api.load(KEY) == Record(b"fresh", created, clock.now + 10)


@pytest.mark.moves_time
async def test_purge_expired_removes_exactly_the_expired_records(
    api: StoreAPI, clock: FakeClock
) -> None:
    start = clock.now
    expired = [f"expired-{i}" for i in range(3)]
    live = [f"live-{i}" for i in range(2)]
    for key in expired:
        await api.save(key, key.encode(), expires_at=start + 10)
    for key in live:
        await api.save(key, key.encode(), expires_at=start + 100)
    clock.advance(50)

    assert await api.purge_expired() == 3
    assert await api.purge_expired() == 0
    # Back before every deadline: a record purge only skipped would load again.
    clock.now = start
    for key in expired:
        assert await api.load(key) is None
    for key in live:
        record = await api.load(key)
        assert record is not None and record.payload == key.encode()


async def test_record_saved_with_a_past_deadline_is_absent(api: StoreAPI, clock: FakeClock) -> None:
    await api.save(OTHER, b"live", expires_at=clock.now + 60)
    old = await api.save(KEY, b"already expired", expires_at=clock.now - 1)

    assert await api.load(KEY) is None
    assert await api.touch(KEY, clock.now + 60) is False
    assert await api.delete(KEY, expected_version=old) is False
    created = await api.save(KEY, b"fresh", expires_at=clock.now + 60, expected_version=ABSENT)
    assert created is not None
    assert await api.load(KEY) == Record(b"fresh", created, clock.now + 60)
    live = await api.load(OTHER)
    assert live is not None and live.payload == b"live"


async def test_touch_to_a_past_deadline_expires_the_record(api: StoreAPI, clock: FakeClock) -> None:
    await api.save(KEY, b"soon gone", expires_at=clock.now + 60)

    assert await api.touch(KEY, clock.now - 1) is True

    assert await api.load(KEY) is None


INVALID_KEYS = [
    pytest.param("../../etc/passwd", id="traversal"),
    pytest.param("", id="empty"),
    pytest.param("a/b", id="slash"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("k" * 200, id="200-chars"),
    pytest.param("séance", id="non-ascii"),
    pytest.param(".hidden", id="dot"),
    pytest.param("abc\n", id="newline"),
]


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_invalid_key_raises_value_error_and_touches_no_file(
    api: StoreAPI,
    clock: FakeClock,
    key: str,
    tmp_path: Path,
) -> None:
    await api.save(KEY, b"existing", expires_at=clock.now + 60)
    before = tree(tmp_path)

    with pytest.raises(ValueError, match="invalid session key"):
        await api.load(key)
    with pytest.raises(ValueError, match="invalid session key"):
        await api.save(key, b"evil", expires_at=clock.now + 60)
    with pytest.raises(ValueError, match="invalid session key"):
        await api.save(key, b"evil", expires_at=clock.now + 60, expected_version=ABSENT)
    with pytest.raises(ValueError, match="invalid session key"):
        await api.delete(key)
    with pytest.raises(ValueError, match="invalid session key"):
        await api.touch(key, clock.now + 60)

    assert tree(tmp_path) == before


WRITERS = 8
ITEMS_PER_WRITER = 5
MAX_ATTEMPTS = 2_000


async def test_concurrent_compare_and_swap_writers_lose_no_item(
    api: StoreAPI, clock: FakeClock
) -> None:
    deadline = clock.now + 600
    all_read = api.barrier(WRITERS)
    first_swaps: list[bool] = []

    async def writer(number: int) -> None:
        for n in range(ITEMS_PER_WRITER):
            for attempt in range(MAX_ATTEMPTS):
                record = await api.load(KEY)
                items = json.loads(record.payload) if record else []
                expected = record.version if record else ABSENT
                if n == attempt == 0:
                    await all_read()  # every writer read the empty record before any swaps
                payload = json.dumps([*items, f"{number}-{n}"]).encode()
                saved = await api.save(KEY, payload, expires_at=deadline, expected_version=expected)
                if n == attempt == 0:
                    first_swaps.append(saved is not None)
                if saved is not None:
                    break
            else:
                raise AssertionError(f"writer {number} lost {MAX_ATTEMPTS} swaps in a row")

    await api.run_concurrently(writer, WRITERS)

    assert first_swaps.count(True) == 1  # of writers that all expected "absent", one won
    record = await api.load(KEY)
    assert record is not None
    expected_items = {f"{w}-{n}" for w in range(WRITERS) for n in range(ITEMS_PER_WRITER)}
    stored = json.loads(record.payload)
    assert sorted(stored) == sorted(expected_items)


async def test_update_shows_the_live_record_and_stores_what_the_updater_returns(
    api: StoreAPI, clock: FakeClock
) -> None:
    seen: list[Record | None] = []

    def append(suffix: bytes) -> Updater:
        def updater(record: Record | None) -> Write:
            seen.append(record)
            base = record.payload if record else b""
            return Write(base + suffix, clock.now + 60)

        return updater

    first = await api.update(KEY, append(b"a"))
    second = await api.update(KEY, append(b"b"))

    assert seen[0] is None and seen[-1] is not None and seen[-1].version == first
    assert second is not None and second != first
    assert await api.load(KEY) == Record(b"ab", second, clock.now + 60)


async def test_update_that_declines_writes_nothing(api: StoreAPI, clock: FakeClock) -> None:
    version = await api.save(KEY, b"kept", expires_at=clock.now + 60)
    assert version is not None

    assert await api.update(KEY, lambda record: None) is None
    assert await api.update(OTHER, lambda record: None) is None

    assert await api.load(KEY) == Record(b"kept", version, clock.now + 60)
    assert await api.load(OTHER) is None


async def test_update_returning_no_payload_deletes_the_record(
    api: StoreAPI, clock: FakeClock
) -> None:
    await api.save(KEY, b"doomed", expires_at=clock.now + 60)

    assert await api.update(KEY, lambda record: Write(None)) == ABSENT
    assert await api.update(OTHER, lambda record: Write(None)) == ABSENT

    assert await api.load(KEY) is None
    assert await api.load(OTHER) is None


async def test_concurrent_updates_lose_no_item(api: StoreAPI, clock: FakeClock) -> None:
    def add(item: str) -> Updater:
        def updater(record: Record | None) -> Write:
            items = json.loads(record.payload) if record else []
            return Write(json.dumps([*items, item]).encode(), clock.now + 600)

        return updater

    async def writer(number: int) -> None:
        for n in range(ITEMS_PER_WRITER):
            assert await api.update(KEY, add(f"{number}-{n}")) is not None
            await asyncio.sleep(0)

    await api.run_concurrently(writer, WRITERS)

    record = await api.load(KEY)
    assert record is not None
    expected = sorted(f"{w}-{n}" for w in range(WRITERS) for n in range(ITEMS_PER_WRITER))
    assert sorted(json.loads(record.payload)) == expected


# -- the session core on top of each store: merge and corruption policy -----------------


class CoreDriver:
    """Runs the core's flows against the store the way the matching adapter would."""

    def __init__(self, api: StoreAPI, clock: FakeClock, **options: Any) -> None:
        self.api = api
        self.core = build_core("contract-secret", **options)
        self.core.clock = clock

    async def run(self, flow: Flow[Any]) -> Any:
        if self.api.mode == "sync":
            return run_sync(flow, self.api.store)
        return await run_async(flow, self.api.store)

    def cookie(self, key: str) -> str:
        return f"session={self.core.signer.sign(key)}"

    async def open(self, key: str) -> Session:
        opened = await self.run(self.core.open(self.cookie(key)))
        assert isinstance(opened, Session)
        return opened

    async def create(self, **data: Any) -> str:
        session = Session()
        session.update(data)
        result = await self.run(self.core.commit(session))
        assert isinstance(result, tuple) and result[0].startswith("session=")
        return session._sg.id


async def test_concurrent_requests_changing_different_keys_lose_nothing(
    api: StoreAPI, clock: FakeClock
) -> None:
    driver = CoreDriver(api, clock)
    key = await driver.create(user="alice")
    all_loaded = api.barrier(WRITERS)

    async def request(number: int) -> None:
        session = await driver.open(key)
        await all_loaded()  # every request has loaded the session before any saves
        session[f"k{number}"] = number
        result = await driver.run(driver.core.commit(session))
        assert isinstance(result, tuple) and key in result[0]

    await api.run_concurrently(request, WRITERS)

    final = await driver.open(key)
    assert dict(final) == {"user": "alice", **{f"k{n}": n for n in range(WRITERS)}}


async def test_logout_wins_over_a_slower_concurrent_save(api: StoreAPI, clock: FakeClock) -> None:
    driver = CoreDriver(api, clock)
    key = await driver.create(user="alice")
    logout, slow = await driver.open(key), await driver.open(key)

    logout.invalidate()
    await driver.run(driver.core.commit(logout))
    slow["cart"] = ["book"]
    result = await driver.run(driver.core.commit(slow))

    assert result == (driver.core.cookie.clear_header(),)
    assert await api.load(key) is None


@pytest.mark.parametrize("garbage", [b"", b"\x80\x04K\x01.", b"SG\x01\x00garbage"])
async def test_corrupt_record_is_reset_and_removed(
    api: StoreAPI, clock: FakeClock, garbage: bytes
) -> None:
    driver = CoreDriver(api, clock)
    key = await driver.create(user="alice")
    await api.save(key, garbage, expires_at=clock.now + 60)

    session = await driver.open(key)

    assert session.is_new and dict(session) == {} and session._sg.id != key
    assert await api.load(key) is None


async def test_corrupt_record_is_rejected_and_kept(api: StoreAPI, clock: FakeClock) -> None:
    driver = CoreDriver(api, clock, policy=CorruptionPolicy("reject"))
    key = await driver.create(user="alice")
    await api.save(key, b"garbage", expires_at=clock.now + 60)

    answer = await driver.run(driver.core.open(driver.cookie(key)))

    assert isinstance(answer, ErrorResponse) and answer.status == 400
    record = await api.load(key)
    assert record is not None and record.payload == b"garbage"


async def test_request_in_flight_during_regenerate_is_refused_by_default(
    api: StoreAPI, clock: FakeClock
) -> None:
    driver = CoreDriver(api, clock)
    key = await driver.create(user="alice")
    in_flight, login = await driver.open(key), await driver.open(key)

    login.regenerate()
    login["role"] = "admin"
    await driver.run(driver.core.commit(login))
    in_flight["cart"] = ["book"]
    result = await driver.run(driver.core.commit(in_flight))

    assert isinstance(result, ErrorResponse) and result.status == 409
    final = await driver.open(login._sg.id)
    assert dict(final) == {"user": "alice", "role": "admin"}


async def test_request_in_flight_during_regenerate_with_carry_merges_into_the_new_session(
    api: StoreAPI, clock: FakeClock
) -> None:
    # Stores that count versions per key (Redis, SQL) give the old and the new id the same
    # small numbers: the in-flight request must still merge, not overwrite the new record.
    driver = CoreDriver(api, clock)
    key = await driver.create(user="alice")
    in_flight, login = await driver.open(key), await driver.open(key)

    login.regenerate(carry_in_flight=True)
    login["role"] = "admin"
    await driver.run(driver.core.commit(login))
    in_flight["cart"] = ["book"]
    result = await driver.run(driver.core.commit(in_flight))

    assert result == ()  # the browser already holds the new cookie
    final = await driver.open(login._sg.id)
    assert dict(final) == {"user": "alice", "role": "admin", "cart": ["book"]}
