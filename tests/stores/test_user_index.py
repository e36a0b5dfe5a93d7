"""The per-user index: every store keeps each record's owner and lists a user's sessions,
changed in the same atomic step as the record (`Owner`, `Write.owner`, `sessions_of`).

The same backends as the store contract, sync and async.
"""

from __future__ import annotations

import random

import pytest

from sessionguard.stores import Store
from sessionguard.stores.base import KEEP, BaseStore, Owner, Updater, Write
from tests.clock import FakeClock

from .test_contract import KEY, OTHER, StoreAPI, api, pytest_generate_tests, store

__all__ = ["api", "pytest_generate_tests", "store"]

ALICE, BOB = "alice@example.com", "4711"
PAYLOAD = b"payload"


def always(write: Write) -> Updater:
    return lambda record: write


def indexed(api: StoreAPI) -> BaseStore:
    assert isinstance(api.store, BaseStore)
    return api.store


async def save(api: StoreAPI, key: str, expires_at: float, owner: Owner) -> int | None:
    if api.mode == "sync":
        return indexed(api).save(key, PAYLOAD, expires_at=expires_at, owner=owner)  # type: ignore[call-arg]
    return await indexed(api).asave(key, PAYLOAD, expires_at=expires_at, owner=owner)


async def sessions_of(api: StoreAPI, user: str) -> set[str]:
    store = indexed(api)
    found = store.sessions_of(user) if api.mode == "sync" else await store.asessions_of(user)
    assert len(found) == len(set(found)), found
    return set(found)


async def owner_of(api: StoreAPI, key: str) -> str | None:
    store = indexed(api)
    return store.owner_of(key) if api.mode == "sync" else await store.aowner_of(key)


def test_every_built_in_store_indexes_users(store: Store) -> None:
    assert getattr(store, "indexes_users", False)


async def test_a_saved_owner_is_indexed_and_a_save_that_keeps_it_changes_nothing(
    api: StoreAPI, clock: FakeClock
) -> None:
    await save(api, KEY, clock.now + 60, ALICE)
    await save(api, OTHER, clock.now + 60, ALICE)
    assert await sessions_of(api, ALICE) == {KEY, OTHER}
    assert await owner_of(api, KEY) == ALICE

    await save(api, KEY, clock.now + 60, KEEP)
    assert await owner_of(api, KEY) == ALICE
    assert await sessions_of(api, ALICE) == {KEY, OTHER}
    assert await sessions_of(api, BOB) == set()


async def test_a_new_owner_moves_the_record_between_users_and_none_unindexes_it(
    api: StoreAPI, clock: FakeClock
) -> None:
    await save(api, KEY, clock.now + 60, ALICE)
    await save(api, KEY, clock.now + 60, BOB)
    assert (await sessions_of(api, ALICE), await sessions_of(api, BOB)) == (set(), {KEY})
    await save(api, KEY, clock.now + 60, None)
    assert await sessions_of(api, BOB) == set()
    assert await owner_of(api, KEY) is None
    assert await api.load(KEY) is not None  # the record itself stays


async def test_an_update_sets_the_owner_it_writes_and_a_delete_by_update_unindexes(
    api: StoreAPI, clock: FakeClock
) -> None:
    await api.update(KEY, lambda record: Write(PAYLOAD, clock.now + 60, owner=ALICE))
    assert await sessions_of(api, ALICE) == {KEY}
    await api.update(KEY, lambda record: Write(b"changed", clock.now + 60))  # KEEP
    assert await owner_of(api, KEY) == ALICE
    await api.update(KEY, lambda record: None)  # writes nothing, changes nothing
    assert await sessions_of(api, ALICE) == {KEY}
    await api.update(KEY, lambda record: Write(None))
    assert await sessions_of(api, ALICE) == set()
    assert await owner_of(api, KEY) is None


async def test_delete_unindexes_and_touch_keeps_the_owner(api: StoreAPI, clock: FakeClock) -> None:
    await save(api, KEY, clock.now + 60, ALICE)
    await save(api, OTHER, clock.now + 60, ALICE)
    assert await api.touch(KEY, clock.now + 120)
    assert await owner_of(api, KEY) == ALICE
    assert await api.delete(OTHER)
    assert await sessions_of(api, ALICE) == {KEY}


@pytest.mark.moves_time
async def test_purging_an_expired_record_unindexes_it(api: StoreAPI, clock: FakeClock) -> None:
    await save(api, KEY, clock.now + 60, ALICE)
    await save(api, OTHER, clock.now + 600, ALICE)
    clock.advance(61)
    await api.purge_expired()
    assert await sessions_of(api, ALICE) == {OTHER}


@pytest.mark.parametrize(
    "user",
    ["../../etc/passwd", "ünïcødé", "x" * 500, "a/b", ".", "", "id with\nnewline", "\x00nul"],
)
async def test_any_user_string_is_kept_safely(api: StoreAPI, clock: FakeClock, user: str) -> None:
    await save(api, KEY, clock.now + 60, user)
    assert await sessions_of(api, user) == {KEY}
    assert await owner_of(api, KEY) == user
    assert await sessions_of(api, user + "x") == set()


async def test_concurrent_logins_and_logouts_leave_the_index_exactly_as_the_records(
    api: StoreAPI, clock: FakeClock
) -> None:
    # Eight workers move six sessions between three users and no one, each change an
    # atomic update: afterwards every session is indexed exactly under its owner.
    users = [ALICE, BOB, "carol", None]
    keys = [f"session-{n:02d}" for n in range(6)]

    async def worker(n: int) -> None:
        rng = random.Random(n)
        for _ in range(40):
            key, owner = rng.choice(keys), rng.choice(users)
            write = Write(None) if rng.random() < 0.1 else Write(PAYLOAD, clock.now + 60, owner)
            await api.update(key, always(write))

    await api.run_concurrently(worker, 8)

    owners = {key: await owner_of(api, key) for key in keys}
    for user in users[:-1]:
        assert user is not None
        assert await sessions_of(api, user) == {k for k, o in owners.items() if o == user}
    for key, owner in owners.items():
        if owner is not None:
            assert await api.load(key) is not None
