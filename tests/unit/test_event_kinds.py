"""Every `EventKind` fires when its moment comes, and names the session by its hash.

One scenario per kind, driven through the core's real flows against real stores (a
`MemoryStore`, and a `RedisStore` aimed at a port where no server listens for the
outage). Removing any `_emit` from the code makes its scenario fail; a new kind without a
scenario fails `test_every_kind_has_a_scenario`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

import pytest

from sessionguard.codec import Envelope, encode
from sessionguard.cookie import new_id
from sessionguard.core import SessionCore
from sessionguard.driver import run_sync
from sessionguard.events import Event, EventKind
from sessionguard.legacy import LegacyCookie
from sessionguard.ops import key_hash
from sessionguard.options import SessionOptions, build_core
from sessionguard.policy import ErrorResponse
from sessionguard.session import Session
from sessionguard.stores.memory import MemoryStore
from sessionguard.stores.redis import RedisStore
from sessionguard.users import UserSessions
from tests.clock import START, FakeClock
from tests.servers import free_port

SECRET = "event-kinds-secret"


class World:
    """A core with a hook that records every event, over a real store, on a fake clock."""

    def __init__(self, **options: Unpack[SessionOptions]) -> None:
        self.clock = FakeClock(START)
        self.events: list[Event] = []
        self.store: MemoryStore | RedisStore = MemoryStore(clock=self.clock)
        options["hooks"] = [self.events.append]
        self.core: SessionCore = build_core(SECRET, **options)
        self.core.clock = self.clock

    def open(self, cookie: str | None) -> Session | ErrorResponse:
        return run_sync(self.core.open(cookie), self.store, self.core.events)

    def session(self, cookie: str | None) -> Session:
        opened = self.open(cookie)
        assert isinstance(opened, Session), opened
        return opened

    def commit(self, session: Session) -> tuple[str, ...] | ErrorResponse:
        return run_sync(self.core.commit(session), self.store, self.core.events)

    def create(self, **data: Any) -> str:
        """A stored session holding `data`; its Cookie header."""
        session = self.session(None)
        session.update(data)
        sent = self.commit(session)
        assert not isinstance(sent, ErrorResponse) and len(sent) == 1, sent
        self.events.clear()  # each scenario looks only at what it does itself
        return sent[0].split(";", 1)[0]

    def key_of(self, cookie: str) -> str:
        key = self.core.signer.unsign(cookie.split("=", 1)[1])
        assert key is not None
        return key

    def of_kind(self, kind: EventKind) -> list[Event]:
        return [event for event in self.events if event.kind == kind]


Scenario = Callable[[], tuple[World, str | None]]
SCENARIOS: dict[EventKind, Scenario] = {}


def scenario(kind: EventKind) -> Callable[[Scenario], Scenario]:
    """Register what makes `kind` fire: it returns the world and the session's id (or
    `None` when the event names no session)."""

    def register(func: Scenario) -> Scenario:
        SCENARIOS[kind] = func
        return func

    return register


@scenario(EventKind.LOAD)
def _load() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    world.commit(world.session(cookie))
    return world, world.key_of(cookie)


@scenario(EventKind.SAVE)
def _save() -> tuple[World, str | None]:
    world = World()
    session = world.session(None)
    session["user"] = 1
    world.commit(session)
    return world, session._sg.id


SCENARIOS[EventKind.CREATED] = _save  # storing a new session is both


@scenario(EventKind.UPDATE)
def _update() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    session = world.session(cookie)
    session["cart"] = [1]
    world.commit(session)
    return world, world.key_of(cookie)


@scenario(EventKind.DELETE)
def _delete() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    session = world.session(cookie)
    session.invalidate()
    world.commit(session)
    return world, world.key_of(cookie)


@scenario(EventKind.INVALIDATE)
def _invalidate() -> tuple[World, str | None]:
    return _delete()


@scenario(EventKind.TOUCH)
def _touch() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    world.clock.advance(120)  # the idle deadline now moves by more than the throttle
    world.commit(world.session(cookie))
    return world, world.key_of(cookie)


@scenario(EventKind.CORRUPT)
def _corrupt() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    key = world.key_of(cookie)
    world.store.save(key, b"<html>502 Bad Gateway</html>", expires_at=START + 3600)
    world.open(cookie)
    return world, key


@scenario(EventKind.MERGE)
def _merge() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    first, second = world.session(cookie), world.session(cookie)
    first["a"], second["b"] = 1, 2
    world.commit(first)
    world.commit(second)
    return world, world.key_of(cookie)


@scenario(EventKind.CONFLICT)
def _conflict() -> tuple[World, str | None]:
    world = World()
    world.core.max_attempts = 2
    cookie = world.create(user=1)
    in_flight = world.session(cookie)
    current = cookie
    for _ in range(3):  # three logins in a row, each carrying in-flight writes on
        session = world.session(current)
        session.regenerate(carry_in_flight=True)
        sent = world.commit(session)
        assert not isinstance(sent, ErrorResponse)
        current = sent[0].split(";", 1)[0]
    in_flight["late"] = 1
    answer = world.commit(in_flight)  # must follow three pointers, may follow two
    assert isinstance(answer, ErrorResponse) and answer.status == 503
    return world, world.key_of(cookie)


@scenario(EventKind.STORE_ERROR)
def _store_error() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    # A real outage: a Redis URL where no server listens.
    world.store = RedisStore(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5, connect_timeout=0.5
    )
    answer = world.open(cookie)
    assert isinstance(answer, ErrorResponse) and answer.status == 503
    return world, None  # the load failed before the session was known


@scenario(EventKind.EXPIRED)
def _expired() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    world.store.delete(world.key_of(cookie))
    world.open(cookie)
    return world, world.key_of(cookie)


@scenario(EventKind.REGENERATE)
def _regenerate() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    session = world.session(cookie)
    session.regenerate()
    world.commit(session)
    return world, world.key_of(cookie)


@scenario(EventKind.ROTATED)
def _rotated() -> tuple[World, str | None]:
    world = World()
    cookie = world.create(user=1)
    in_flight, login = world.session(cookie), world.session(cookie)
    login.regenerate()
    world.commit(login)
    in_flight["late"] = 1
    answer = world.commit(in_flight)
    assert isinstance(answer, ErrorResponse) and answer.status == 409
    return world, world.key_of(cookie)


@scenario(EventKind.REJECTED_COOKIE)
def _rejected_cookie() -> tuple[World, str | None]:
    world = World()
    world.open(f"session={new_id()}.forged-signature")
    return world, None


@scenario(EventKind.TOO_LARGE)
def _too_large() -> tuple[World, str | None]:
    world = World(max_size=512)
    session = world.session(None)
    session["blob"] = "x" * 1000
    answer = world.commit(session)
    assert isinstance(answer, ErrorResponse) and answer.status == 413
    return world, session._sg.id


class _OldBackend:
    def load(self, legacy_id: str) -> dict[str, Any] | None:
        return {"user_id": 7} if legacy_id == "oldsession0001" else None


def _adopted_world() -> World:
    return World(legacy=LegacyCookie("sessionid", source=_OldBackend()))


@scenario(EventKind.ADOPT)
def _adopt() -> tuple[World, str | None]:
    world = _adopted_world()
    adopted = world.session("sessionid=oldsession0001")
    assert dict(adopted) == {"user_id": 7}
    return world, None  # named by the hash of the old id's marker, not of a session


@scenario(EventKind.ADOPT_REFUSED)
def _adopt_refused() -> tuple[World, str | None]:
    world = _adopted_world()
    world.commit(world.session("sessionid=oldsession0001"))
    world.events.clear()
    replayed = world.session("sessionid=oldsession0001")
    assert dict(replayed) == {}
    return world, None


@scenario(EventKind.USER_BOUND)
def _user_bound() -> tuple[World, str | None]:
    world = World(user_key="user")
    cookie = world.create(visits=1)
    session = world.session(cookie)
    session["user"] = "alice"  # the login
    world.commit(session)
    return world, world.key_of(cookie)


@scenario(EventKind.REVOKED)
def _revoked() -> tuple[World, str | None]:
    world = World(user_key="user")
    cookie = world.create(user="alice")
    users = UserSessions(world.store, SECRET, user_key="user", hooks=[world.events.append])
    assert users.revoke("alice") == 1
    return world, world.key_of(cookie)


def test_every_kind_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(EventKind)


@pytest.mark.parametrize("kind", list(EventKind), ids=str)
def test_the_event_fires_and_names_the_session_by_its_hash(kind: EventKind) -> None:
    world, key = SCENARIOS[kind]()
    fired = world.of_kind(kind)
    assert fired, f"no {kind} event among {[e.kind for e in world.events]}"
    for event in fired:
        if key is not None:
            assert event.session == key_hash(key)
        # Events are safe to log: a session appears only as its short hash.
        assert event.session is None or len(event.session) == 12


@pytest.mark.parametrize(
    ("kind", "duration"),
    [(EventKind.LOAD, True), (EventKind.SAVE, True), (EventKind.CREATED, False)],
)
def test_store_operations_carry_their_duration_and_decisions_do_not(
    kind: EventKind, duration: bool
) -> None:
    world, _ = SCENARIOS[kind]()
    assert all((event.duration is not None) == duration for event in world.of_kind(kind))


def test_only_a_save_that_sets_the_user_binds_it() -> None:
    world = World(user_key="user")
    cookie = world.create(user="alice")
    session = world.session(cookie)
    session["cart"] = [1]  # the user is unchanged
    world.commit(session)
    assert world.of_kind(EventKind.USER_BOUND) == []
    unindexed = World()
    session = unindexed.session(unindexed.create(visits=1))
    session["user"] = "alice"  # no user_key: no one is bound
    unindexed.commit(session)
    assert unindexed.of_kind(EventKind.USER_BOUND) == []


def test_a_session_that_is_only_read_is_neither_created_nor_saved_again() -> None:
    world = World()
    cookie = world.create(user=1)
    world.commit(world.session(cookie))
    kinds = {event.kind for event in world.events}
    assert kinds == {EventKind.LOAD}


def test_an_empty_new_session_is_never_created() -> None:
    world = World()
    world.commit(world.session(None))
    assert world.events == []


def test_expiry_says_why() -> None:
    world = World(absolute_timeout=7200)
    cookie = world.create(user=1)
    # The operator lowers the absolute lifetime: the stored deadline outlives the new one.
    world.core.absolute_timeout = 3600
    world.clock.advance(3601)
    world.open(cookie)
    assert [e.reason for e in world.of_kind(EventKind.EXPIRED)] == ["absolute"]
    world, _ = _expired()
    assert [e.reason for e in world.of_kind(EventKind.EXPIRED)] == ["missing"]


def test_corruption_says_why() -> None:
    world, _ = _corrupt()
    assert [e.reason for e in world.of_kind(EventKind.CORRUPT)] == ["bad_magic"]


def test_a_merge_is_reported_only_when_there_was_something_to_merge() -> None:
    world = World()
    cookie = world.create(user=1)
    session = world.session(cookie)
    session["a"] = 1
    world.commit(session)
    assert world.of_kind(EventKind.MERGE) == []
    world, _ = _merge()
    assert len(world.of_kind(EventKind.MERGE)) == 1


def test_unused_planted_record_is_not_an_event() -> None:
    # Guard for the scenarios' own set-up: a record saved straight into the store (as
    # _corrupt does) is no event at all; only what the core does is reported.
    world = World()
    world.store.save(new_id(), encode(Envelope({}, START)), expires_at=START + 60)
    assert world.events == []
