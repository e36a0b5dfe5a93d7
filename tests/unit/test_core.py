"""`SessionCore` flows driven by `run_sync` against a real `MemoryStore` and a fake clock."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Unpack

import pytest

from sessionguard.codec import Envelope, decode, encode
from sessionguard.cookie import Signer, new_id
from sessionguard.core import SessionCore
from sessionguard.driver import _perform, run_sync
from sessionguard.errors import ConfigurationError, CorruptReason, StoreUnavailableError
from sessionguard.legacy import LegacyCookie
from sessionguard.ops import Save, Update, key_hash
from sessionguard.options import SessionOptions, build_core
from sessionguard.policy import Action, CorruptionEvent, CorruptionPolicy, ErrorResponse
from sessionguard.session import Session
from sessionguard.stores.base import (
    KEEP,
    UPDATE_ATTEMPTS,
    Owner,
    Record,
    Updater,
    update_by_swap,
)
from sessionguard.stores.memory import MemoryStore
from tests.clock import START, FakeClock

SECRET = "unit-test-secret"
FAR_FUTURE = START + 10 * 365 * 24 * 3600


class CountingStore(MemoryStore):
    """A real `MemoryStore` that counts the calls made to it."""

    def __init__(self, *, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.calls: collections.Counter[str] = collections.Counter()

    def load(self, key: str) -> Record | None:
        self.calls["load"] += 1
        return super().load(key)

    def save(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        self.calls["save"] += 1
        return super().save(
            key, payload, expires_at=expires_at, expected_version=expected_version, owner=owner
        )

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        self.calls["delete"] += 1
        return super().delete(key, expected_version=expected_version)

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        self.calls["touch"] += 1
        return super().touch(key, expires_at, expected_version=expected_version)

    def writes(self) -> int:
        return self.calls["save"] + self.calls["delete"] + self.calls["touch"]


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    return CountingStore(clock=clock)


def make_core(clock: FakeClock, **options: Unpack[SessionOptions]) -> SessionCore:
    core = build_core(SECRET, **options)
    core.clock = clock
    return core


@pytest.fixture
def core(clock: FakeClock) -> SessionCore:
    return make_core(clock)


def open_session(core: SessionCore, store: MemoryStore, cookie: str | None) -> Session:
    result = run_sync(core.open(cookie), store)
    assert isinstance(result, Session), result
    return result


def commit(core: SessionCore, store: MemoryStore, session: Session) -> str | None:
    """The one Set-Cookie value the commit sends, if any (these tests use no legacy cookie)."""
    result = run_sync(core.commit(session), store)
    assert not isinstance(result, ErrorResponse), result
    assert len(result) <= 1, result
    return result[0] if result else None


def cookie_of(set_cookie: str | None) -> str:
    """The Cookie request header a browser sends back after receiving `set_cookie`."""
    assert set_cookie is not None
    assert "Max-Age=0" not in set_cookie, set_cookie
    return set_cookie.split(";", 1)[0]


def key_of(core: SessionCore, cookie: str) -> str:
    key = core.signer.unsign(cookie.split("=", 1)[1])
    assert key is not None
    return key


def create(core: SessionCore, store: MemoryStore, **data: Any) -> str:
    session = open_session(core, store, None)
    session.update(data)
    return cookie_of(commit(core, store, session))


def stored(store: MemoryStore, key: str) -> Envelope | None:
    record = store.load(key)
    return None if record is None else decode(record.payload)


def stored_data(store: MemoryStore, key: str) -> dict[str, Any] | None:
    envelope = stored(store, key)
    return None if envelope is None else envelope.data


def plant(store: MemoryStore, payload: bytes) -> str:
    """Store `payload` under a fresh id, live far into the future; return the id."""
    key = new_id()
    assert store.save(key, payload, expires_at=FAR_FUTURE) is not None
    return key


def header(response: ErrorResponse, name: str) -> str:
    values = [value for key, value in response.headers if key == name]
    assert len(values) == 1, response.headers
    return values[0]


# -- opening -----------------------------------------------------------------------------


def test_request_without_cookie_gets_new_session_without_store_access(
    core: SessionCore, store: CountingStore
) -> None:
    session = open_session(core, store, None)
    assert session.is_new
    assert not session._sg.stale_cookie
    assert commit(core, store, session) is None
    assert sum(store.calls.values()) == 0


def test_other_cookies_only_count_as_no_cookie(core: SessionCore, store: CountingStore) -> None:
    session = open_session(core, store, "theme=dark; csrftoken=abc")
    assert session.is_new
    assert commit(core, store, session) is None
    assert store.calls["load"] == 0


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        new_id(),  # unsigned
        "../../etc/passwd",
        "x" * 10_240,
        new_id().upper() + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_bad_cookie_gets_new_session_without_store_load(
    core: SessionCore, store: CountingStore, value: str
) -> None:
    session = open_session(core, store, f"session={value}")
    assert session.is_new
    assert not session._sg.stale_cookie  # not verified as ours: never cleared
    assert store.calls["load"] == 0


def test_cookie_signed_with_another_key_is_not_looked_up(
    clock: FakeClock, store: CountingStore
) -> None:
    other = make_core(clock)
    other.signer = Signer("another-secret")
    cookie = create(other, store, user=42)
    store.calls.clear()

    session = open_session(make_core(clock), store, cookie)
    assert session.is_new
    assert store.calls["load"] == 0


def test_unknown_id_gets_new_session_with_new_id(core: SessionCore, store: CountingStore) -> None:
    unknown = new_id()
    session = open_session(core, store, f"session={core.signer.sign(unknown)}")
    assert session.is_new
    assert session._sg.stale_cookie
    assert session._sg.id != unknown
    assert store.calls["load"] == 1


def test_a_stale_cookie_of_ours_is_cleared_when_the_session_stays_empty(
    core: SessionCore, store: CountingStore
) -> None:
    session = open_session(core, store, f"session={core.signer.sign(new_id())}")
    assert commit(core, store, session) == core.cookie.clear_header()
    assert store.writes() == 0


def test_a_cookie_we_did_not_sign_is_never_cleared(core: SessionCore, store: CountingStore) -> None:
    """Flask's own session cookie is also called "session": it is not ours to delete."""
    flask_cookie = "eyJfZmxhc2hlcyI6W119.Zx1y2w.abcdefghijklmnop"
    session = open_session(core, store, f"session={flask_cookie}")
    assert commit(core, store, session) is None
    assert store.writes() == 0


def test_stale_cookie_is_replaced_when_the_app_writes(
    core: SessionCore, store: CountingStore
) -> None:
    stale = core.signer.sign(new_id())
    session = open_session(core, store, f"session={stale}")
    session["user"] = 42
    cookie = cookie_of(commit(core, store, session))
    assert cookie != f"session={stale}"
    assert stored_data(store, key_of(core, cookie)) == {"user": 42}


def test_read_only_session_is_never_written(core: SessionCore, store: CountingStore) -> None:
    cookie = create(core, store, user=42)
    store.calls.clear()
    result = run_sync(core.open(cookie, read_only=True), store)
    assert isinstance(result, Session)
    assert result["user"] == 42
    assert run_sync(core.commit(result), store) == ()
    assert store.writes() == 0


# -- create, load, refresh ---------------------------------------------------------------


def test_new_session_with_data_is_saved_and_cookie_is_set(
    core: SessionCore, store: CountingStore
) -> None:
    session = open_session(core, store, None)
    session["user"] = 42
    set_cookie = commit(core, store, session)

    assert set_cookie == core.cookie.set_header(core.signer.sign(session._sg.id))
    envelope = stored(store, session._sg.id)
    assert envelope == Envelope({"user": 42}, created_at=START)


def test_new_session_left_empty_is_not_saved(core: SessionCore, store: CountingStore) -> None:
    session = open_session(core, store, None)
    session["tmp"] = 1
    del session["tmp"]
    assert commit(core, store, session) is None
    assert store.writes() == 0


def test_cookie_loads_the_same_data(core: SessionCore, store: CountingStore) -> None:
    cookie = create(core, store, user=42, cart=["a", "b"])
    session = open_session(core, store, cookie)
    assert not session.is_new
    assert session._sg.id == key_of(core, cookie)
    assert dict(session) == {"user": 42, "cart": ["a", "b"]}


@pytest.mark.parametrize("elapsed", [0, 30, 59])
def test_unchanged_request_writes_nothing_and_sets_no_cookie(
    core: SessionCore, store: CountingStore, clock: FakeClock, elapsed: float
) -> None:
    cookie = create(core, store, user=42)
    store.calls.clear()
    clock.advance(elapsed)
    session = open_session(core, store, cookie)
    assert commit(core, store, session) is None
    assert store.writes() == 0


def test_unchanged_request_touches_when_deadline_moves_over_a_minute(
    core: SessionCore, store: CountingStore, clock: FakeClock
) -> None:
    cookie = create(core, store, user=42)
    key = key_of(core, cookie)
    before = store.load(key)
    assert before is not None
    store.calls.clear()

    clock.advance(61)
    session = open_session(core, store, cookie)
    assert commit(core, store, session) == core.cookie.set_header(core.signer.sign(key))

    after = store.load(key)
    assert after is not None
    assert store.calls["touch"] == 1 and store.calls["save"] == 0
    assert after.version == before.version
    assert after.expires_at == before.expires_at + 61


def test_touch_threshold_is_one_percent_of_a_short_idle_timeout(
    clock: FakeClock, store: CountingStore
) -> None:
    core = make_core(clock, idle_timeout=1000)  # threshold min(60, 10) = 10 s
    cookie = create(core, store, user=42)
    store.calls.clear()

    clock.advance(9)
    assert commit(core, store, open_session(core, store, cookie)) is None
    assert store.calls["touch"] == 0

    clock.advance(2)
    assert commit(core, store, open_session(core, store, cookie)) is not None
    assert store.calls["touch"] == 1


def test_save_every_request_touches_every_time_without_rewriting(
    clock: FakeClock, store: CountingStore
) -> None:
    core = make_core(clock, save_every_request=True)
    cookie = create(core, store, user=42)
    key = key_of(core, cookie)
    first = store.load(key)
    assert first is not None
    store.calls.clear()

    for _ in range(3):
        session = open_session(core, store, cookie)
        assert cookie_of(commit(core, store, session)) == cookie

    assert store.calls["touch"] == 3
    assert store.calls["save"] == 0
    latest = store.load(key)
    assert latest is not None
    assert latest.version == first.version
    assert latest.payload == first.payload


def test_changed_session_is_saved_under_the_same_id(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    session = open_session(core, store, cookie)
    session["theme"] = "dark"
    assert cookie_of(commit(core, store, session)) == cookie
    assert stored_data(store, key_of(core, cookie)) == {"user": 42, "theme": "dark"}


def test_deleting_every_key_deletes_the_record_and_clears_the_cookie(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    session = open_session(core, store, cookie)
    session.clear()
    assert commit(core, store, session) == core.cookie.clear_header()
    assert store.load(key_of(core, cookie)) is None


# -- timeouts ----------------------------------------------------------------------------


def test_idle_timeout_slides_with_use_and_expires_an_idle_session(
    clock: FakeClock, store: CountingStore
) -> None:
    core = make_core(clock, idle_timeout=600)
    cookie = create(core, store, user=42)

    clock.advance(599)
    session = open_session(core, store, cookie)
    assert session["user"] == 42
    assert commit(core, store, session) is not None  # deadline moved: touched

    clock.advance(599)
    assert open_session(core, store, cookie)["user"] == 42

    clock.advance(601)
    session = open_session(core, store, cookie)
    assert session.is_new
    assert commit(core, store, session) == core.cookie.clear_header()


def test_absolute_timeout_ends_a_session_even_when_touched_constantly(
    clock: FakeClock, store: CountingStore
) -> None:
    core = make_core(clock, idle_timeout=3600, absolute_timeout=24 * 3600)
    cookie = create(core, store, user=42)
    deadline = START + 24 * 3600

    for _ in range(100):  # bounded: 100 x 30 min is well past the deadline
        clock.advance(1800)
        session = open_session(core, store, cookie)
        if clock.now < deadline:
            assert session["user"] == 42
            commit(core, store, session)
            record = store.load(session._sg.id)
            assert record is not None and record.expires_at <= deadline
        else:
            assert session.is_new
            assert commit(core, store, session) == core.cookie.clear_header()
            break
    else:
        pytest.fail("the session outlived its absolute timeout")
    assert store.calls["touch"] >= 40  # it really was kept busy


def test_absolute_timeout_is_enforced_even_if_the_store_keeps_the_record(
    core: SessionCore, store: CountingStore
) -> None:
    assert core.absolute_timeout is not None
    created = START - core.absolute_timeout - 1
    key = plant(store, encode(Envelope({"user": 42}, created_at=created)))

    session = open_session(core, store, f"session={core.signer.sign(key)}")
    assert session.is_new
    assert len(session) == 0
    assert store.load(key) is None
    assert commit(core, store, session) == core.cookie.clear_header()


# -- concurrent changes: merge -----------------------------------------------------------


def test_concurrent_changes_to_different_keys_are_both_kept(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    a = open_session(core, store, cookie)
    b = open_session(core, store, cookie)
    a["cart"] = ["book"]
    b["theme"] = "dark"

    assert commit(core, store, a) is not None
    assert commit(core, store, b) is not None

    assert stored_data(store, key_of(core, cookie)) == {
        "user": 42,
        "cart": ["book"],
        "theme": "dark",
    }


@pytest.mark.parametrize("first", ["a", "b"])
def test_same_key_set_concurrently_keeps_the_later_commit(
    core: SessionCore, store: CountingStore, first: str
) -> None:
    cookie = create(core, store, user=42)
    sessions = {"a": open_session(core, store, cookie), "b": open_session(core, store, cookie)}
    sessions["a"]["theme"] = "from a"
    sessions["b"]["theme"] = "from b"
    second = "b" if first == "a" else "a"

    commit(core, store, sessions[first])
    commit(core, store, sessions[second])

    assert stored_data(store, key_of(core, cookie)) == {"user": 42, "theme": f"from {second}"}


@pytest.mark.parametrize("deleter_first", [True, False])
def test_concurrent_delete_and_set_both_apply(
    core: SessionCore, store: CountingStore, deleter_first: bool
) -> None:
    cookie = create(core, store, user=42, flash="hello")
    deleter = open_session(core, store, cookie)
    setter = open_session(core, store, cookie)
    del deleter["flash"]
    setter["cart"] = ["book"]

    order = [deleter, setter] if deleter_first else [setter, deleter]
    for session in order:
        commit(core, store, session)

    assert stored_data(store, key_of(core, cookie)) == {"user": 42, "cart": ["book"]}


def test_concurrent_merge_does_not_resurrect_a_key_deleted_meanwhile(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42, flash="hello")
    reader = open_session(core, store, cookie)  # sees "flash", changes something else
    deleter = open_session(core, store, cookie)
    del deleter["flash"]
    commit(core, store, deleter)
    reader["cart"] = ["book"]
    commit(core, store, reader)

    assert stored_data(store, key_of(core, cookie)) == {"user": 42, "cart": ["book"]}


def test_merge_false_is_last_writer_wins_and_loses_an_update(
    clock: FakeClock, store: CountingStore
) -> None:
    core = make_core(clock, merge=False)
    cookie = create(core, store, user=42)
    a = open_session(core, store, cookie)
    b = open_session(core, store, cookie)
    a["cart"] = ["book"]
    b["theme"] = "dark"
    commit(core, store, a)
    commit(core, store, b)

    assert stored_data(store, key_of(core, cookie)) == {"user": 42, "theme": "dark"}


# -- logout ------------------------------------------------------------------------------


def test_logout_wins_over_a_concurrent_modification(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    key = key_of(core, cookie)
    a = open_session(core, store, cookie)
    b = open_session(core, store, cookie)

    a.invalidate()
    assert commit(core, store, a) == core.cookie.clear_header()
    b["cart"] = ["book"]
    result = run_sync(core.commit(b), store)

    assert result == (core.cookie.clear_header(),)
    assert store.load(key) is None


def test_logout_after_a_concurrent_modification_deletes_it(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    a = open_session(core, store, cookie)
    b = open_session(core, store, cookie)
    b["cart"] = ["book"]
    commit(core, store, b)
    a.invalidate()
    assert commit(core, store, a) == core.cookie.clear_header()
    assert store.load(key_of(core, cookie)) is None


def test_keys_set_after_logout_start_a_new_session(core: SessionCore, store: CountingStore) -> None:
    cookie = create(core, store, user=42)
    session = open_session(core, store, cookie)
    session.invalidate()
    session["flash"] = "logged out"
    new_cookie = cookie_of(commit(core, store, session))

    assert new_cookie != cookie
    assert store.load(key_of(core, cookie)) is None
    assert stored_data(store, key_of(core, new_cookie)) == {"flash": "logged out"}


def test_regenerate_after_logout_keeps_keys_set_afterwards(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    session = open_session(core, store, cookie)
    session.invalidate()
    session.regenerate()
    session["flash"] = "logged out"
    new_cookie = cookie_of(commit(core, store, session))

    assert store.load(key_of(core, cookie)) is None
    assert stored_data(store, key_of(core, new_cookie)) == {"flash": "logged out"}


# -- regenerate --------------------------------------------------------------------------


def test_regenerate_moves_data_to_a_new_id_and_leaves_a_pointer(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    old_key = key_of(core, cookie)
    session = open_session(core, store, cookie)
    session.regenerate()
    session["role"] = "admin"
    new_cookie = cookie_of(commit(core, store, session))
    new_key = key_of(core, new_cookie)

    assert new_key != old_key
    assert stored_data(store, new_key) == {"user": 42, "role": "admin"}
    pointer = stored(store, old_key)
    assert pointer is not None
    assert pointer.moved_to == new_key
    assert pointer.data == {}


def test_a_save_in_flight_on_the_old_id_is_refused_and_never_reaches_the_new_session(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    old_key = key_of(core, cookie)
    rider = open_session(core, store, cookie)  # whoever else holds the pre-login id
    login = open_session(core, store, cookie)
    login.regenerate()
    login["role"] = "admin"
    new_key = key_of(core, cookie_of(commit(core, store, login)))
    pointer_before = store.load(old_key)

    rider["csrf_token"] = "known-to-the-attacker"
    refused = run_sync(core.commit(rider), store)

    assert isinstance(refused, ErrorResponse) and refused.status == 409
    assert not any(name.lower() == "set-cookie" for name, _ in refused.headers)
    assert stored_data(store, new_key) == {"user": 42, "role": "admin"}
    assert store.load(old_key) == pointer_before  # the pointer is not touched either


def test_a_read_in_flight_on_the_old_id_sets_no_cookie_and_keeps_the_pointer_short(
    core: SessionCore, store: CountingStore, clock: FakeClock
) -> None:
    cookie = create(core, store, user=42)
    old_key = key_of(core, cookie)
    reader = open_session(core, store, cookie)
    login = open_session(core, store, cookie)
    login.regenerate()
    commit(core, store, login)
    pointer = store.load(old_key)
    assert pointer is not None and pointer.expires_at <= clock.now + core.regenerate_grace

    clock.advance(120)  # the reader's refresh is due: its deadline would move by minutes
    assert commit(core, store, reader) is None  # no cookie: the browser has the new one

    clock.advance(core.regenerate_grace - 120 + 1)
    assert store.load(old_key) is None, "a read on the old id extended the forward pointer"


def test_changes_saved_on_the_old_id_while_the_login_ran_are_not_carried(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    early = open_session(core, store, cookie)
    login = open_session(core, store, cookie)
    early["note"] = "planted"
    commit(core, store, early)  # lands on the old id after the login read it

    login.regenerate()
    login["role"] = "admin"
    new_key = key_of(core, cookie_of(commit(core, store, login)))

    assert stored_data(store, new_key) == {"user": 42, "role": "admin"}


def test_with_carry_a_change_in_flight_on_the_old_id_lands_in_the_regenerated_session(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    old_key = key_of(core, cookie)
    c = open_session(core, store, cookie)  # opened before the regenerate commits
    login = open_session(core, store, cookie)
    login.regenerate(carry_in_flight=True)
    login["role"] = "admin"
    new_key = key_of(core, cookie_of(commit(core, store, login)))

    c["cart"] = ["book"]
    assert commit(core, store, c) is None  # the browser already holds the new cookie

    assert stored_data(store, new_key) == {"user": 42, "role": "admin", "cart": ["book"]}
    pointer = stored(store, old_key)
    assert pointer is not None and pointer.moved_to == new_key


def test_with_carry_a_change_committed_on_the_old_id_before_regenerate_is_carried_over(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    c = open_session(core, store, cookie)
    login = open_session(core, store, cookie)
    c["cart"] = ["book"]
    commit(core, store, c)

    login.regenerate(carry_in_flight=True)
    login["role"] = "admin"
    new_key = key_of(core, cookie_of(commit(core, store, login)))

    assert stored_data(store, new_key) == {"user": 42, "cart": ["book"], "role": "admin"}


def test_carry_over_keeps_a_change_that_followed_the_pointer_meanwhile(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    early, follower, login = (open_session(core, store, cookie) for _ in range(3))
    early["cart"] = ["book"]
    commit(core, store, early)  # lands on the old id before the regenerate commits
    login.regenerate(carry_in_flight=True)
    login["role"] = "admin"

    # Step through the regenerate: new copy, pointer, then the carry-over, with another
    # request following the pointer into the new session between the last two steps.
    flow = core.commit(login)
    op = next(flow)
    assert isinstance(op, Save)
    op = flow.send(_perform(op, store))
    assert isinstance(op, Update) and op.key == key_of(core, cookie)
    op = flow.send(_perform(op, store))
    assert isinstance(op, Update) and op.key == login._sg.id
    follower["theme"] = "dark"
    assert commit(core, store, follower) is None
    with pytest.raises(StopIteration) as done:
        flow.send(_perform(op, store))

    assert done.value.value == (core.cookie.set_header(core.signer.sign(login._sg.id)),)
    expected = {"user": 42, "cart": ["book"], "role": "admin", "theme": "dark"}
    assert stored_data(store, login._sg.id) == expected


def test_opening_the_old_id_after_regenerate_gives_a_fresh_session_without_clearing(
    core: SessionCore, store: CountingStore
) -> None:
    cookie = create(core, store, user=42)
    session = open_session(core, store, cookie)
    session.regenerate()
    new_key = key_of(core, cookie_of(commit(core, store, session)))

    late = open_session(core, store, cookie)
    assert late.is_new
    assert len(late) == 0
    assert late._sg.id != new_key  # no fixation: the old cookie never leads to the new id
    assert not late._sg.stale_cookie
    assert commit(core, store, late) is None


def test_old_id_is_gone_after_the_grace_window(
    core: SessionCore, store: CountingStore, clock: FakeClock
) -> None:
    cookie = create(core, store, user=42)
    old_key = key_of(core, cookie)
    session = open_session(core, store, cookie)
    session.regenerate()
    new_cookie = cookie_of(commit(core, store, session))

    clock.advance(core.regenerate_grace + 1)
    assert store.load(old_key) is None
    stale = open_session(core, store, cookie)
    assert stale.is_new and stale._sg.stale_cookie
    assert commit(core, store, stale) == core.cookie.clear_header()
    assert open_session(core, store, new_cookie)["user"] == 42


# -- store trouble -----------------------------------------------------------------------


class CasAlwaysMissesStore(CountingStore):
    """A store without a lock (so `update` is the compare-and-swap loop) that always loses."""

    missing = False

    def save(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        if self.missing and expected_version is not None:
            self.calls["save"] += 1
            return None
        return super().save(
            key, payload, expires_at=expires_at, expected_version=expected_version, owner=owner
        )

    def update(self, key: str, updater: Updater) -> int | None:
        return update_by_swap(self, key, updater)


def test_conflict_that_never_resolves_answers_503_and_leaves_data_unchanged(
    core: SessionCore, clock: FakeClock
) -> None:
    store = CasAlwaysMissesStore(clock=clock)
    cookie = create(core, store, user=42)
    key = key_of(core, cookie)
    before = store.load(key)
    store.missing = True
    saves_before = store.calls["save"]

    session = open_session(core, store, cookie)
    session["cart"] = ["book"]
    result = run_sync(core.commit(session), store)

    assert isinstance(result, ErrorResponse)
    assert result.status == 503
    assert header(result, "retry-after") == "5"
    # Every attempt of the store's compare-and-swap loop, then the 503.
    assert store.calls["save"] - saves_before == UPDATE_ATTEMPTS
    assert store.load(key) == before


class LoadUnavailableStore(CountingStore):
    def load(self, key: str) -> Record | None:
        raise StoreUnavailableError("the session database is down")


def test_store_unavailable_on_load_answers_503(core: SessionCore, clock: FakeClock) -> None:
    store = LoadUnavailableStore(clock=clock)
    cookie = create(core, store, user=42)
    result = run_sync(core.open(cookie), store)
    assert isinstance(result, ErrorResponse)
    assert result.status == 503
    assert header(result, "retry-after") == "5"
    assert ("set-cookie", core.cookie.clear_header()) not in result.headers


class SaveUnavailableStore(CountingStore):
    failing = False

    def save(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        if self.failing:
            raise StoreUnavailableError("disk full")
        return super().save(
            key, payload, expires_at=expires_at, expected_version=expected_version, owner=owner
        )

    def update(self, key: str, updater: Updater) -> int | None:
        if self.failing:
            raise StoreUnavailableError("disk full")
        return super().update(key, updater)


def test_store_unavailable_on_save_answers_503_and_keeps_data(
    core: SessionCore, clock: FakeClock
) -> None:
    store = SaveUnavailableStore(clock=clock)
    cookie = create(core, store, user=42)
    session = open_session(core, store, cookie)
    session["cart"] = ["book"]
    store.failing = True

    result = run_sync(core.commit(session), store)
    assert isinstance(result, ErrorResponse)
    assert result.status == 503
    assert stored_data(store, key_of(core, cookie)) == {"user": 42}


# -- corrupt records ---------------------------------------------------------------------

CORRUPT = {
    CorruptReason.EMPTY: b"",
    CorruptReason.TRUNCATED: encode(Envelope({"user": 42}, START))[:30],
    CorruptReason.BAD_MAGIC: b"not a session record",
    CorruptReason.CHECKSUM_MISMATCH: encode(Envelope({"user": 42}, START))[:-1] + b"\x00",
    CorruptReason.LEGACY_PICKLE: b"\x80\x04}\x94.",
}


def open_corrupt(
    core: SessionCore, store: MemoryStore, payload: bytes
) -> tuple[str, Session | ErrorResponse]:
    key = plant(store, payload)
    return key, run_sync(core.open(f"session={core.signer.sign(key)}"), store)


@pytest.mark.parametrize("reason", list(CORRUPT))
def test_corrupt_record_under_reset_is_deleted_and_session_starts_fresh(
    core: SessionCore, store: CountingStore, reason: CorruptReason
) -> None:
    key, session = open_corrupt(core, store, CORRUPT[reason])

    assert isinstance(session, Session)
    assert session.is_new and len(session) == 0
    assert session._sg.id != key
    assert store.load(key) is None
    assert commit(core, store, session) == core.cookie.clear_header()


def test_app_writing_after_a_reset_gets_a_new_session(
    core: SessionCore, store: CountingStore
) -> None:
    key, session = open_corrupt(core, store, b"garbage")
    assert isinstance(session, Session)
    session["user"] = 42
    new_cookie = cookie_of(commit(core, store, session))
    assert key_of(core, new_cookie) != key
    assert stored_data(store, key_of(core, new_cookie)) == {"user": 42}


def test_corrupt_record_under_reject_answers_400_clears_cookie_and_keeps_record(
    clock: FakeClock, store: CountingStore
) -> None:
    core = make_core(clock, policy=CorruptionPolicy("reject"))
    key, result = open_corrupt(core, store, b"garbage")

    assert isinstance(result, ErrorResponse)
    assert result.status == 400
    assert result.body == b"Invalid session data\n"
    assert header(result, "set-cookie") == core.cookie.clear_header()
    record = store.load(key)
    assert record is not None and record.payload == b"garbage"


def test_callable_policy_chooses_per_event(clock: FakeClock, store: CountingStore) -> None:
    def policy(event: CorruptionEvent) -> Action:
        return "reject" if event.reason == CorruptReason.LEGACY_PICKLE else "reset"

    core = make_core(clock, policy=CorruptionPolicy(policy))
    pickled_key, pickled = open_corrupt(core, store, CORRUPT[CorruptReason.LEGACY_PICKLE])
    damaged_key, damaged = open_corrupt(core, store, CORRUPT[CorruptReason.CHECKSUM_MISMATCH])

    assert isinstance(pickled, ErrorResponse) and pickled.status == 400
    assert store.load(pickled_key) is not None
    assert isinstance(damaged, Session) and damaged.is_new
    assert store.load(damaged_key) is None


@pytest.mark.parametrize("reason", list(CORRUPT))
def test_on_event_gets_the_reason_and_a_key_hash_never_the_id(
    clock: FakeClock, store: CountingStore, reason: CorruptReason
) -> None:
    events: list[CorruptionEvent] = []
    core = make_core(clock, policy=CorruptionPolicy(on_event=events.append))
    key, _ = open_corrupt(core, store, CORRUPT[reason])

    assert len(events) == 1
    event = events[0]
    assert event.reason is reason
    assert event.key_hash == key_hash(key)
    assert key not in repr(event)
    assert key[:12] not in repr(event)


def test_quarantine_dir_receives_the_bytes_and_the_record_is_removed(
    clock: FakeClock, store: CountingStore, tmp_path: Path
) -> None:
    quarantine = tmp_path / "quarantine"
    core = make_core(clock, policy=CorruptionPolicy(quarantine_dir=quarantine))
    payload = CORRUPT[CorruptReason.CHECKSUM_MISMATCH]
    key, session = open_corrupt(core, store, payload)

    assert isinstance(session, Session) and session.is_new
    assert store.load(key) is None
    files = list(quarantine.iterdir())
    assert [file.name for file in files] == [f"{key_hash(key)}-checksum_mismatch-{int(START)}.bin"]
    assert files[0].read_bytes() == payload
    assert key not in files[0].name


def test_corrupt_record_without_a_cookie_to_it_is_not_touched(
    core: SessionCore, store: CountingStore
) -> None:
    key = plant(store, b"garbage")
    open_session(core, store, None)
    record = store.load(key)
    assert record is not None and record.payload == b"garbage"


# -- regressions ---------------------------------------------------------------------------


def test_zero_idle_timeout_raises_configuration_error(clock: FakeClock) -> None:
    with pytest.raises(ConfigurationError, match="idle_timeout"):
        make_core(clock, idle_timeout=0)


def test_regenerate_does_not_restart_the_absolute_lifetime(
    clock: FakeClock, store: CountingStore
) -> None:
    core = make_core(clock, idle_timeout=3600, absolute_timeout=24 * 3600)
    cookie = create(core, store, user=42)

    for _ in range(100):  # bounded: rotate the id every 30 minutes, as some apps do
        clock.advance(1800)
        session = open_session(core, store, cookie)
        if session.is_new:
            break
        session.regenerate()
        cookie = cookie_of(commit(core, store, session))
    assert clock.now <= START + 24 * 3600, "regenerating kept the session alive past its lifetime"


# -- legacy adoption, once ----------------------------------------------------------------


class OldStore:
    """The replaced backend's sessions as a `LegacySource` sees them: read-only, by old id."""

    def __init__(self, sessions: dict[str, dict[str, Any]]) -> None:
        self.sessions = sessions

    def load(self, legacy_id: str) -> dict[str, Any] | None:
        return self.sessions.get(legacy_id)


def test_two_requests_with_one_old_cookie_adopt_it_once(
    store: CountingStore, clock: FakeClock
) -> None:
    old = OldStore({"oldsession0001": {"user_id": 7}})
    core = make_core(clock, legacy=LegacyCookie("sessionid", source=old))
    header = "sessionid=oldsession0001"
    flows = [core.open(header), core.open(header)]
    # Both requests read the old id before either claims it: the worst interleaving.
    ops = [next(flow) for flow in flows]
    while not all(isinstance(op, Update) for op in ops):
        ops = [
            op if isinstance(op, Update) else flow.send(_perform(op, store))
            for flow, op in zip(flows, ops, strict=True)
        ]
    sessions = []
    for flow, op in zip(flows, ops, strict=True):
        with pytest.raises(StopIteration) as done:
            flow.send(_perform(op, store))
        sessions.append(done.value.value)

    assert [dict(s) for s in sessions] == [{"user_id": 7}, {}]
    assert all(s.is_new for s in sessions)
    # And later, once the first is saved, the old id stays adopted.
    saved = run_sync(core.commit(sessions[0]), store)
    assert not isinstance(saved, ErrorResponse) and len(saved) == 2  # new cookie, old cleared
    assert dict(open_session(core, store, header)) == {}


def test_a_planted_pointer_naming_an_invalid_key_is_corrupt_and_never_followed(
    core: SessionCore, store: CountingStore
) -> None:
    """Someone with write access to the store turns a live session into a "forward pointer"
    to `../../etc/passwd`: a request in flight must not send that name to the store."""
    cookie = create(core, store, user=42)
    key = key_of(core, cookie)
    in_flight = open_session(core, store, cookie)
    planted = encode(Envelope({}, START, moved_to="../../etc/passwd"))
    store.save(key, planted, expires_at=FAR_FUTURE)

    in_flight["cart"] = ["book"]
    commit(core, store, in_flight)  # raised ValueError (a 500) before

    assert stored_data(store, key) == {"cart": ["book"]}  # the unreadable record started over


def test_a_merge_that_would_pass_max_size_is_refused_and_writes_nothing(
    store: CountingStore, clock: FakeClock
) -> None:
    core = make_core(clock, max_size=200)
    cookie = create(core, store, user=42)
    first, second = open_session(core, store, cookie), open_session(core, store, cookie)
    first["a"] = "x" * 100
    commit(core, store, first)  # fits on its own

    second["b"] = "y" * 100  # fits on its own too, but not on top of the first's change
    refused = run_sync(core.commit(second), store)

    assert isinstance(refused, ErrorResponse) and refused.status == 413
    assert stored_data(store, key_of(core, cookie)) == {"user": 42, "a": "x" * 100}
