"""With `hashed_ids=`, no store names a session by its id or a user by theirs: every
backend of the store contract, through the core's own flows, sync and async.

A copy of the store then holds only keyed hashes: a session id (the thing a thief would
put in a cookie) appears nowhere, not even in a regenerate's forward pointer, and with a
cipher too, neither does any session data.
"""

from __future__ import annotations

from typing import Any

from sessionguard.cipher import RecordCipher
from sessionguard.core import SessionCore
from sessionguard.driver import run_async, run_sync
from sessionguard.events import Event, EventKind
from sessionguard.hashedids import HashedIds
from sessionguard.ops import Flow
from sessionguard.options import build_core
from sessionguard.session import Session
from sessionguard.stores.base import BaseStore
from sessionguard.users import UserSessions

from .test_contract import StoreAPI, api, pytest_generate_tests, store

__all__ = ["api", "pytest_generate_tests", "store"]

SECRET = "hashed-ids-secret"
IDS = HashedIds(HashedIds.new_key())
CIPHER = RecordCipher([RecordCipher.new_key()])
USER = "alice@example.com"


class App:
    """One middleware's core over the store under test, driven as the adapters drive it."""

    def __init__(self, api: StoreAPI, hashed_ids: HashedIds | None = IDS, **options: Any) -> None:
        self.api = api
        self.events: list[Event] = []
        self.core: SessionCore = build_core(
            SECRET,
            user_key="user",
            cipher=CIPHER,
            hashed_ids=hashed_ids,
            hooks=[self.events.append],
            **options,
        )

    async def drive(self, flow: Flow[Any]) -> Any:
        if self.api.mode == "sync":
            return run_sync(flow, self.api.store)
        return await run_async(flow, self.api.store)

    async def open(self, cookie: str | None) -> Session:
        session = await self.drive(self.core.open(f"session={cookie}" if cookie else None))
        assert isinstance(session, Session)
        return session

    async def commit(self, session: Session) -> str:
        """The cookie value the response sets."""
        (header, *_) = await self.drive(self.core.commit(session))
        return str(header).split(";", 1)[0].removeprefix("session=")

    async def log_in(self) -> str:
        session = await self.open(None)
        session["visits"] = 1
        first = await self.commit(session)
        session = await self.open(first)
        session["user"] = USER
        session.regenerate(carry_in_flight=True)  # leaves a forward pointer for a while
        return await self.commit(session)


def session_id(cookie: str) -> str:
    return cookie.split(".", 1)[0]


def indexed(api: StoreAPI) -> BaseStore:
    assert isinstance(api.store, BaseStore)
    return api.store


def everything_stored(api: StoreAPI) -> bytes:
    """The store's keys, payloads and owners: what a copy of it would give a thief."""
    store = indexed(api)
    found = [(s.key, s.record.payload, store.owner_of(s.key) or "") for s in store.scan()]
    return b"\n".join(k.encode() + b" " + p + b" " + o.encode() for k, p, o in found)


async def test_a_copy_of_the_store_holds_no_session_id_no_user_id_and_no_data(
    api: StoreAPI,
) -> None:
    app = App(api)
    first_visit = await app.open(None)
    first_visit["visits"] = 1
    anonymous = await app.commit(first_visit)
    logged_in = await app.log_in()

    dump = everything_stored(api)

    assert dump.count(b"\n") >= 2  # the anonymous session, the login and its pointer
    for cookie in (anonymous, logged_in):
        assert session_id(cookie).encode() not in dump
    assert USER.encode() not in dump and b"visits" not in dump
    assert (await app.open(logged_in))["user"] == USER


async def test_the_user_is_indexed_by_a_keyed_hash_and_listed_and_revoked_by_their_id(
    api: StoreAPI,
) -> None:
    app = App(api)
    devices = [await app.log_in() for _ in range(3)]
    users = UserSessions(indexed(api), SECRET, user_key="user", cipher=CIPHER, hashed_ids=IDS)
    store = indexed(api)

    assert store.sessions_of(USER) == []  # the index never names the user as given
    assert len(store.sessions_of(IDS.of_user(USER))) == 3
    listed = await users.asessions(USER) if api.mode == "async" else users.sessions(USER)
    assert sorted(s.session for s in listed) == sorted(users.hash_of(d) for d in devices)

    assert users.revoke(USER, keep=devices[0]) == 2

    assert (await app.open(devices[0]))["user"] == USER
    assert [dict(await app.open(d)) for d in devices[1:]] == [{}, {}]


async def test_events_and_the_users_list_name_a_session_by_the_same_hash(api: StoreAPI) -> None:
    app = App(api)
    cookie = await app.log_in()
    users = UserSessions(indexed(api), SECRET, user_key="user", cipher=CIPHER, hashed_ids=IDS)

    created = [e.session for e in app.events if e.kind == EventKind.USER_BOUND]

    assert created == [users.hash_of(cookie)] == [s.session for s in users.sessions(USER)]


async def test_a_request_in_flight_on_the_old_id_merges_into_the_new_one_without_its_id(
    api: StoreAPI,
) -> None:
    app = App(api)
    first = await app.open(None)
    first["visits"] = 1
    cookie = await app.commit(first)
    in_flight = await app.open(cookie)  # a slow request, still on the old id
    login = await app.open(cookie)
    login["user"] = USER
    login.regenerate(carry_in_flight=True)
    new_cookie = await app.commit(login)

    in_flight["cart"] = ["book"]
    saved = await app.drive(app.core.commit(in_flight))

    assert saved == ()  # merged into the new session, whose cookie it never sends
    assert dict(await app.open(new_cookie)) == {"visits": 1, "user": USER, "cart": ["book"]}
    assert session_id(new_cookie).encode() not in everything_stored(api)


async def test_turning_hashed_ids_on_keeps_every_session_and_moves_it_under_its_hash(
    api: StoreAPI,
) -> None:
    before = App(api, hashed_ids=None)
    cookie = await before.log_in()
    assert session_id(cookie).encode() in everything_stored(api)

    after = App(api)
    session = await after.open(cookie)
    assert session["user"] == USER
    session["visits"] = 2
    assert await after.commit(session) == cookie  # the same cookie: no one is logged out

    assert session_id(cookie).encode() not in everything_stored(api)
    users = UserSessions(indexed(api), SECRET, user_key="user", cipher=CIPHER, hashed_ids=IDS)
    assert [s.session for s in users.sessions(USER)] == [users.hash_of(cookie)]


async def test_another_id_key_finds_nothing_and_deletes_nothing(api: StoreAPI) -> None:
    cookie = await App(api).log_in()
    dump = everything_stored(api)

    stranger = App(api, hashed_ids=HashedIds(HashedIds.new_key()))
    assert dict(await stranger.open(cookie)) == {}

    assert everything_stored(api) == dump
    assert (await App(api).open(cookie))["user"] == USER
