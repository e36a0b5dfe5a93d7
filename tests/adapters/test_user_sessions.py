"""A user's sessions through the real adapters: "show my active sessions", "log out my
other devices", "log out everywhere", and nothing brought back by a request in flight.

The test app's `/login` sets `user = "alice"` and regenerates the id, as a login should;
the middleware is told `user_key="user"`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from sessionguard import wsgi
from sessionguard.core import SessionCore
from sessionguard.driver import run_sync
from sessionguard.errors import ConfigurationError
from sessionguard.ops import key_hash
from sessionguard.options import build_core
from sessionguard.policy import ErrorResponse
from sessionguard.session import Session
from sessionguard.stores import FileStore, MemoryStore
from sessionguard.users import UserSessions
from sessionguard.wsgi import get_session

from .apps import SECRET, AppClient, CountingFileStore, cookie_header, session_set_cookie
from .conftest import ClientFactory


async def log_in(client: AppClient) -> str:
    """A new device: a first visit, then a login. Its session id."""
    first = session_set_cookie(await client.get("/count"))
    assert first is not None
    logged_in = session_set_cookie(await client.post("/login", cookie=cookie_header(first.value)))
    assert logged_in is not None and logged_in.session_id != first.session_id
    return logged_in.value


async def read(client: AppClient, cookie: str) -> tuple[dict[str, object], str | None]:
    response = await client.get("/read", cookie=cookie_header(cookie))
    sent = session_set_cookie(response)
    return response.json(), None if sent is None else sent.attributes.get("max-age")


@pytest.fixture
def users(store: CountingFileStore) -> UserSessions:
    return UserSessions(store, SECRET, user_key="user")


async def test_show_my_sessions_lists_each_device_by_hash_only(
    make_client: ClientFactory, users: UserSessions
) -> None:
    client = make_client(user_key="user")
    devices = [await log_in(client) for _ in range(3)]

    listed = users.sessions("alice")

    assert sorted(s.session for s in listed) == sorted(key_hash(d.split(".")[0]) for d in devices)
    assert all(s.created_at <= s.expires_at for s in listed)
    assert users.sessions("bob") == []


async def test_log_out_my_other_devices_keeps_only_the_current_one(
    make_client: ClientFactory, users: UserSessions
) -> None:
    client = make_client(user_key="user")
    current, *others = [await log_in(client) for _ in range(3)]

    assert users.revoke("alice", keep=key_hash(current.split(".")[0])) == 2

    assert (await read(client, current))[0] == {"count": 1, "user": "alice"}
    for cookie in others:
        data, max_age = await read(client, cookie)
        assert data == {} and max_age == "0"  # logged out, and the cookie is cleared
    assert [s.session for s in users.sessions("alice")] == [key_hash(current.split(".")[0])]


async def test_log_out_everywhere_ends_every_session_and_a_new_login_still_works(
    make_client: ClientFactory, users: UserSessions
) -> None:
    client = make_client(user_key="user")
    devices = [await log_in(client) for _ in range(2)]

    assert users.revoke("alice") == 2
    assert users.revoke("alice") == 0

    for cookie in devices:
        assert (await read(client, cookie))[0] == {}
    again = await log_in(client)
    assert [s.session for s in users.sessions("alice")] == [key_hash(again.split(".")[0])]


async def test_logout_takes_the_session_out_of_the_users_list(
    make_client: ClientFactory, users: UserSessions
) -> None:
    client = make_client(user_key="user")
    cookie = await log_in(client)
    await client.post("/logout", cookie=cookie_header(cookie))
    assert users.sessions("alice") == []


async def test_the_async_api_does_the_same(make_client: ClientFactory, users: UserSessions) -> None:
    client = make_client(user_key="user")
    current, other = await log_in(client), await log_in(client)
    assert len(await users.asessions("alice")) == 2
    assert await users.arevoke("alice", keep=key_hash(current.split(".")[0])) == 1
    assert (await read(client, other))[0] == {}


@pytest.fixture(params=["memory", "file"])
def any_store(
    request: pytest.FixtureRequest, tmp_path: object
) -> Iterator[MemoryStore | FileStore]:
    store = MemoryStore() if request.param == "memory" else FileStore(f"{tmp_path}/sessions")
    yield store
    store.close()


def alices_session(core: SessionCore, store: MemoryStore | FileStore) -> tuple[Session, str]:
    """A new session of alice's, stored as the middleware stores it; and its cookie."""
    session = run_sync(core.open(None), store)
    assert isinstance(session, Session)
    session["user"] = "alice"
    sent = run_sync(core.commit(session), store)
    assert not isinstance(sent, ErrorResponse)
    return session, sent[0].split(";", 1)[0]


def test_a_request_in_flight_on_a_revoked_session_never_brings_it_back(
    any_store: MemoryStore | FileStore,
) -> None:
    core = build_core(SECRET, user_key="user")
    users = UserSessions(any_store, SECRET, user_key="user")
    new, cookie = alices_session(core, any_store)
    in_flight = run_sync(core.open(cookie), any_store)  # loaded before the revoke
    assert isinstance(in_flight, Session) and in_flight["user"] == "alice"

    assert users.revoke("alice") == 1
    in_flight["cart"] = ["book"]
    answer = run_sync(core.commit(in_flight), any_store)

    assert not isinstance(answer, ErrorResponse)
    assert len(answer) == 1 and "Max-Age=0" in answer[0]  # the cookie is cleared
    assert any_store.load(new._sg.id) is None
    assert users.sessions("alice") == []


def test_a_session_that_changed_user_since_it_was_listed_is_not_ended(
    any_store: MemoryStore | FileStore,
) -> None:
    core = build_core(SECRET, user_key="user")
    users = UserSessions(any_store, SECRET, user_key="user")
    session, cookie = alices_session(core, any_store)
    # Listed as alice's ...
    assert len(users.sessions("alice")) == 1
    # ... then bob logs in on that same session (no regenerate: a bad app, but possible).
    again = run_sync(core.open(cookie), any_store)
    assert isinstance(again, Session)
    again["user"] = "bob"
    run_sync(core.commit(again), any_store)

    assert users.revoke("alice") == 0
    assert any_store.load(session._sg.id) is not None
    assert [s.session for s in users.sessions("bob")] == [key_hash(session._sg.id)]


def test_user_key_needs_a_store_that_keeps_the_index() -> None:
    class Unindexed(MemoryStore):
        indexes_users = False

    with pytest.raises(ConfigurationError, match="per-user index"):
        UserSessions(Unindexed(), SECRET, user_key="user")
    from sessionguard.wsgi import SessionMiddleware

    with pytest.raises(ConfigurationError, match="per-user index"):
        SessionMiddleware(lambda environ, start: [], SECRET, store=Unindexed(), user_key="user")


def test_a_rotated_id_moves_the_session_in_the_index_and_the_pointer_belongs_to_no_one(
    any_store: MemoryStore | FileStore,
) -> None:
    core = build_core(SECRET, user_key="user")
    session, cookie = alices_session(core, any_store)
    old_id = session._sg.id
    rotated = run_sync(core.open(cookie), any_store)
    assert isinstance(rotated, Session)
    rotated.regenerate()
    run_sync(core.commit(rotated), any_store)

    assert rotated._sg.id != old_id
    assert any_store.sessions_of("alice") == [rotated._sg.id]
    assert any_store.owner_of(old_id) is None  # the forward pointer left at the old id


async def test_keep_may_name_the_current_session_by_its_cookie_value(
    make_client: ClientFactory, users: UserSessions
) -> None:
    client = make_client(user_key="user")
    by_value, *_ = [await log_in(client) for _ in range(3)]

    assert users.revoke("alice", keep=by_value) == 2  # the cookie's value
    assert [s.session for s in users.sessions("alice")] == [key_hash(by_value.split(".")[0])]
    with pytest.raises(ValueError, match="names no session"):
        users.revoke("alice", keep="forged.value")
    assert len(users.sessions("alice")) == 1  # nothing was ended


async def test_log_out_that_device_ends_exactly_the_one_named(
    make_client: ClientFactory, users: UserSessions
) -> None:
    client = make_client(user_key="user")
    phone, laptop = await log_in(client), await log_in(client)
    phone_hash = key_hash(phone.split(".")[0])

    assert users.end("alice", phone_hash)
    assert not users.end("alice", phone_hash)  # already ended
    assert not users.end("bob", key_hash(laptop.split(".")[0]))  # not bob's
    assert [s.session for s in users.sessions("alice")] == [key_hash(laptop.split(".")[0])]
    assert await users.aend("alice", laptop)  # by its cookie value, from async code


def test_an_app_caps_each_user_at_two_sessions_with_the_public_api() -> None:
    # At each login the app ends the user's oldest sessions so that, with the new one,
    # there are at most LIMIT: "you are signed in on too many devices".
    limit, store = 2, MemoryStore()
    users = UserSessions(store, SECRET, user_key="user")

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/login":
            current = users.hash_of(session)  # a re-login: its old id may be listed
            session["user"] = "alice"
            session.regenerate()
            older = [s for s in users.sessions("alice") if s.session != current]
            for stale in older[: max(0, len(older) - (limit - 1))]:  # oldest first
                users.end("alice", stale.session)
        start_response("200 OK", [])
        return [b"ok"]

    wrapped = wsgi.SessionMiddleware(app, SECRET, store=store, user_key="user")
    cookies = []
    for _ in range(5):  # five devices, each its own cookie jar
        transport = httpx.WSGITransport(app=wrapped)
        with httpx.Client(transport=transport, base_url="http://x") as device:
            cookies.append(device.get("/login").headers["set-cookie"].split(";")[0])
            again = device.get("/login")  # logging in again on one device ends nothing
            cookies[-1] = again.headers["set-cookie"].split(";")[0]

    kept = [s.session for s in users.sessions("alice")]
    newest = [key_hash(c.split("=", 1)[1].split(".")[0]) for c in cookies[-limit:]]
    assert sorted(kept) == sorted(newest)


def test_keep_means_the_current_session_even_after_a_regenerate_in_the_same_request(
    any_store: MemoryStore | FileStore,
) -> None:
    core = build_core(SECRET, user_key="user")
    users = UserSessions(any_store, SECRET, user_key="user")
    cookies = [alices_session(core, any_store)[1] for _ in range(2)]
    current = run_sync(core.open(cookies[1]), any_store)
    assert isinstance(current, Session)
    current.regenerate()  # e.g. a privilege change, then "log out my other devices"
    assert users.revoke("alice", keep=current) == 1
    answer = run_sync(core.commit(current), any_store)
    assert not isinstance(answer, ErrorResponse) and "Max-Age=0" not in answer[0]
    assert [s.session for s in users.sessions("alice")] == [key_hash(current._sg.id)]


def test_a_users_encrypted_sessions_are_listed_with_the_cipher_only(
    any_store: MemoryStore | FileStore,
) -> None:
    from sessionguard.cipher import RecordCipher

    cipher = RecordCipher([RecordCipher.new_key()])
    core = build_core(SECRET, user_key="user", cipher=cipher)
    session, _ = alices_session(core, any_store)

    readable = UserSessions(any_store, SECRET, user_key="user", cipher=cipher)
    blind = UserSessions(any_store, SECRET, user_key="user")
    assert [s.session for s in readable.sessions("alice")] == [key_hash(session._sg.id)]
    assert blind.sessions("alice") == [] and blind.revoke("alice") == 0
    assert readable.revoke("alice") == 1
