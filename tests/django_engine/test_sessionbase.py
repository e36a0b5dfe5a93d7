"""`sessionguard.django.SessionStore` against Django's `SessionBase` contract.

Every behaviour Django's own session engines are held to (the dict API and its
`accessed`/`modified` bookkeeping, save/exists/delete/flush/cycle_key, key validation,
expiry arithmetic, encode/decode, expired records and `clearsessions`), once through the
blocking API and once through the `a`-prefixed one, on a MemoryStore and on a FileStore
directory. Then what sessionguard adds: signed keys, expiry that reaches the stored
record, empty sessions kept, and concurrent saves merged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core import signing
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from sessionguard.cli import open_store
from sessionguard.cookie import Signer
from sessionguard.django import SessionStore
from sessionguard.stores.base import Record, ScannableStore, StoredRecord, Updater
from sessionguard.stores.memory import MemoryStore

OLD_SECRET = "sessionguard-tests-old-secret-" + "o" * 30
NEW_SECRET = "sessionguard-tests-new-secret-" + "n" * 30
UNRELATED_SECRET = "sessionguard-tests-unrelated-" + "u" * 30


# -- the stores the engine runs on -------------------------------------------------------


class Clock:
    """The real time plus an offset a test moves forward, so records expire without sleeps."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class WatchedMemoryStore(MemoryStore):
    """A MemoryStore that notes every key it is asked about (the async methods call these)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.asked: list[str] = []

    def load(self, key: str) -> Record | None:
        self.asked.append(key)
        return super().load(key)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        self.asked.append(key)
        return super().delete(key, expected_version=expected_version)

    def update(self, key: str, updater: Updater) -> int | None:
        self.asked.append(key)
        return super().update(key, updater)


@dataclass
class Backend:
    """The store under the engine for one test, and a way to look at what it holds."""

    kind: str
    directory: Path | None = None
    memory: WatchedMemoryStore | None = None
    clock: Clock = field(default_factory=Clock)

    def records(self) -> list[StoredRecord]:
        """Every stored record, expired ones too (as `sessionguard scan` sees them)."""
        if self.memory is not None:
            return list(self.memory.scan())
        assert self.directory is not None
        if not self.directory.exists():
            return []
        view = open_store(str(self.directory), create=False)
        assert isinstance(view, ScannableStore)
        try:
            return list(view.scan())
        finally:
            view.close()

    def record(self, session_key: str | None) -> StoredRecord | None:
        wanted = raw_id(session_key)
        return next((found for found in self.records() if found.key == wanted), None)

    def expires_in(self, session_key: str | None) -> float:
        """Seconds from now until the record under `session_key` expires."""
        found = self.record(session_key)
        assert found is not None, "the session is not stored"
        return found.record.expires_at - time.time()


@pytest.fixture(params=["memory", "file"], autouse=True)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each test gets an empty store of its own: a MemoryStore, or a FileStore directory
    named in the settings as a project would name it."""
    if request.param == "memory":
        chosen = Backend("memory")
        chosen.memory = WatchedMemoryStore(chosen.clock)
        target: object = chosen.memory
    else:
        chosen = Backend("file", directory=tmp_path / "sessions")
        target = str(chosen.directory)
    with override_settings(SESSIONGUARD_STORE=target):
        yield chosen


#: Run a test on the MemoryStore alone (it needs the moving clock or the watched keys).
memory_only = pytest.mark.parametrize("backend", ["memory"], indirect=True)


# -- one test body for the blocking and the async API ------------------------------------


class Api:
    """A session's methods by their blocking names, awaitable in either mode.

    `await api.save(s)` is `s.save()` in "sync" mode and `await s.asave()` in "async"
    mode; `api.set(s, k, v)` is `s[k] = v` or `await s.aset(k, v)`.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)

        async def call(session: SessionStore, *args: Any, **kwargs: Any) -> Any:
            if self.mode == "async":
                return await getattr(session, f"a{name}")(*args, **kwargs)
            if name == "set":
                session[args[0]] = args[1]
                return None
            return getattr(session, name)(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Api:
    return Api(request.param)


def raw_id(session_key: str | None) -> str:
    """The store's key for a session: the id part of the signed session key."""
    assert session_key, "the session has no key"
    return session_key.split(".")[0]


async def stored(api: Api, **data: Any) -> SessionStore:
    """A session saved with `data`, as a finished earlier request leaves it."""
    session = SessionStore()
    await api.update(session, data)
    await api.save(session)
    assert session.session_key is not None
    return session


async def reopened(api: Api, session_key: str | None) -> dict[str, Any]:
    """What a later request with `session_key` in its cookie reads."""
    return dict(await api.items(SessionStore(session_key)))


# -- a new session and the dict API ------------------------------------------------------


def test_new_session_is_neither_accessed_nor_modified() -> None:
    session = SessionStore()
    assert session.modified is False
    assert session.accessed is False
    assert session.session_key is None
    assert session.is_empty() is True


async def test_get_of_a_missing_key_is_none_or_the_default(api: Api) -> None:
    session = SessionStore()
    assert await api.get(session, "cat") is None
    assert await api.get(session, "cat", "fallback") == "fallback"
    assert session.accessed is True
    assert session.modified is False


async def test_set_marks_modified_and_pop_returns_the_value(api: Api) -> None:
    session = SessionStore()
    await api.set(session, "cat", "dog")
    assert session.modified is True
    assert await api.pop(session, "cat") == "dog"
    assert await api.get(session, "cat") is None


async def test_pop_of_a_present_key_is_a_change(api: Api) -> None:
    session = SessionStore()
    await api.set(session, "some key", "exists")
    session.accessed = False
    session.modified = False

    assert await api.pop(session, "some key") == "exists"
    assert session.accessed is True
    assert session.modified is True
    assert await api.get(session, "some key") is None


@pytest.mark.parametrize("named", [False, True], ids=["positional", "keyword"])
async def test_pop_of_a_missing_key_returns_the_default_unmodified(api: Api, named: bool) -> None:
    session = SessionStore()
    if named:
        value = await api.pop(session, "some key", default="does not exist")
    else:
        value = await api.pop(session, "some key", "does not exist")
    assert value == "does not exist"
    assert session.accessed is True
    assert session.modified is False


async def test_pop_of_a_missing_key_without_default_raises_key_error(api: Api) -> None:
    session = SessionStore()
    with pytest.raises(KeyError):
        await api.pop(session, "some key")
    assert session.modified is False


async def test_setdefault_sets_once_and_then_returns_the_first_value(api: Api) -> None:
    session = SessionStore()
    assert await api.setdefault(session, "foo", "bar") == "bar"
    assert await api.setdefault(session, "foo", "baz") == "bar"
    assert session.accessed is True
    assert session.modified is True


async def test_update_marks_accessed_and_modified(api: Api) -> None:
    session = SessionStore()
    await api.update(session, {"update key": 1})
    assert session.accessed is True
    assert session.modified is True
    assert await api.get(session, "update key", None) == 1


async def test_has_key_reads_without_modifying(api: Api) -> None:
    session = SessionStore()
    await api.set(session, "some key", 1)
    session.modified = False
    session.accessed = False
    assert await api.has_key(session, "some key") is True
    assert await api.has_key(session, "other key") is False
    assert session.accessed is True
    assert session.modified is False


@pytest.mark.parametrize(
    ("view", "expected"),
    [("keys", ["x"]), ("values", [1]), ("items", [("x", 1)])],
)
async def test_keys_values_items_read_without_modifying(
    api: Api, view: str, expected: list[Any]
) -> None:
    session = SessionStore()
    assert list(await getattr(api, view)(session)) == []
    assert session.accessed is True
    await api.set(session, "x", 1)
    session.modified = False
    session.accessed = False
    assert list(await getattr(api, view)(session)) == expected
    assert session.accessed is True
    assert session.modified is False


def test_mapping_protocol_contains_getitem_delitem() -> None:
    session = SessionStore()
    session["x"] = 1
    session.modified = False
    session.accessed = False
    assert "x" in session
    assert "y" not in session
    assert session["x"] == 1
    assert session.accessed is True
    assert session.modified is False
    with pytest.raises(KeyError):
        session["y"]
    with pytest.raises(KeyError):
        del session["y"]
    assert session.modified is False
    del session["x"]
    assert session.modified is True
    assert "x" not in session


def test_clear_empties_the_session_and_marks_it_modified() -> None:
    session = SessionStore()
    session["x"] = 1
    session.modified = False
    session.accessed = False
    assert list(session.items()) == [("x", 1)]
    session.clear()
    assert list(session.items()) == []
    assert session.accessed is True
    assert session.modified is True


async def test_test_cookie_round_trip(api: Api) -> None:
    session = SessionStore()
    assert await api.has_key(session, session.TEST_COOKIE_NAME) is False
    await api.set_test_cookie(session)
    assert await api.test_cookie_worked(session) is True
    await api.delete_test_cookie(session)
    assert await api.has_key(session, session.TEST_COOKIE_NAME) is False
    assert await api.test_cookie_worked(session) is False


# -- save, exists, delete, flush, cycle_key ----------------------------------------------


async def test_save_of_a_new_session_stores_it_under_a_new_key(api: Api, backend: Backend) -> None:
    session = SessionStore()
    await api.save(session)
    assert session.session_key is not None
    assert await api.exists(session, session.session_key) is True
    assert len(backend.records()) == 1


async def test_save_keeps_the_data_in_the_session(api: Api) -> None:
    session = SessionStore()
    await api.set(session, "a", "b")
    await api.save(session)
    assert await api.get(session, "a") == "b"
    assert await reopened(api, session.session_key) == {"a": "b"}


async def test_later_saves_keep_the_key_and_store_the_changes(api: Api) -> None:
    session = await stored(api, a=1)
    key = session.session_key
    await api.set(session, "b", 2)
    await api.pop(session, "a")
    await api.save(session)
    assert session.session_key == key
    assert await reopened(api, key) == {"b": 2}


async def test_create_then_save(api: Api) -> None:
    session = SessionStore()
    await api.create(session)
    assert session.session_key is not None
    assert session.modified is True  # as Django's create(): the middleware sends the cookie
    key = session.session_key
    await api.set(session, "x", 1)
    await api.save(session)
    assert session.session_key == key
    assert await reopened(api, key) == {"x": 1}


async def test_save_must_create_on_a_stored_session_raises_create_error(api: Api) -> None:
    session = await stored(api, a=1)
    with pytest.raises(CreateError):
        await api.save(session, must_create=True)


async def test_delete_by_key_removes_the_record(api: Api, backend: Backend) -> None:
    session = SessionStore()
    await api.save(session)
    await api.delete(session, session.session_key)
    assert await api.exists(session, session.session_key) is False
    assert backend.records() == []


async def test_delete_without_key_removes_the_sessions_own_record(api: Api) -> None:
    session = await stored(api, a=1)
    key = session.session_key
    await api.delete(session)
    assert await api.exists(SessionStore(), key) is False
    assert await reopened(api, key) == {}


async def test_exists_of_no_key_is_false(api: Api) -> None:
    session = SessionStore()
    assert await api.exists(session, None) is False
    assert await api.exists(session, "") is False


async def test_flush_deletes_the_record_and_forgets_the_key(api: Api) -> None:
    session = SessionStore()
    await api.set(session, "foo", "bar")
    await api.save(session)
    previous = session.session_key

    await api.flush(session)

    assert await api.exists(session, previous) is False
    assert session.session_key is None
    assert session.modified is True
    assert session.accessed is True
    assert dict(await api.items(session)) == {}
    assert await reopened(api, previous) == {}


async def test_flush_of_a_session_never_saved(api: Api, backend: Backend) -> None:
    session = SessionStore()
    await api.set(session, "foo", "bar")
    await api.flush(session)
    assert session.session_key is None
    assert session.modified is True
    assert backend.records() == []


async def test_cycle_key_moves_the_data_to_a_new_key(api: Api) -> None:
    session = SessionStore()
    await api.set(session, "a", "c")
    await api.set(session, "b", "d")
    await api.save(session)
    previous = session.session_key
    data = list(await api.items(session))

    await api.cycle_key(session)

    assert session.session_key is not None
    assert session.session_key != previous
    assert list(await api.items(session)) == data
    assert await api.exists(session, previous) is False
    assert await api.exists(session, session.session_key) is True
    # The old key is a forward pointer only: nobody reaches the new session through it.
    assert await reopened(api, previous) == {}
    assert await reopened(api, session.session_key) == dict(data)


async def test_cycle_key_without_a_loaded_cache(api: Api) -> None:
    first = await stored(api, a="c", b="d")
    session = SessionStore(first.session_key)
    assert hasattr(session, "_session_cache") is False

    await api.cycle_key(session)

    assert session.session_key not in (None, first.session_key)
    assert sorted(await api.items(session)) == [("a", "c"), ("b", "d")]
    assert await reopened(api, session.session_key) == {"a": "c", "b": "d"}


async def test_cycle_key_of_a_session_never_saved_creates_it(api: Api) -> None:
    session = SessionStore()
    await api.set(session, "a", 1)
    await api.cycle_key(session)
    assert session.session_key is not None
    assert dict(await api.items(session)) == {"a": 1}
    assert await api.exists(session, session.session_key) is True


# -- keys: validation, invalid and unknown keys ------------------------------------------


async def test_an_invalid_key_gets_a_new_one_on_save(api: Api, backend: Backend) -> None:
    session = SessionStore("1")
    await api.save(session)
    assert session.session_key not in (None, "1")
    assert await api.get(session, "cat") is None
    await api.delete(session)
    await api.delete(session, "1")
    assert backend.records() == []


async def test_loading_an_unknown_key_creates_no_record(api: Api, backend: Backend) -> None:
    session = SessionStore("someunknownkey")
    assert await api.load(session) == {}
    assert session.session_key is None
    assert await api.exists(session, session.session_key) is False
    assert backend.records() == []


@pytest.mark.parametrize(
    ("given", "kept"), [("", None), ("1234567", None), ("12345678", "12345678")]
)
def test_session_key_validation_on_assignment(given: str, kept: str | None) -> None:
    session = SessionStore()
    session._session_key = given
    assert session.session_key == kept


def test_session_key_is_read_only() -> None:
    session = SessionStore()
    with pytest.raises(AttributeError):
        session.session_key = session._get_new_session_key()


def test_new_keys_are_signed_ids() -> None:
    key = SessionStore()._get_new_session_key()
    ident, _, signature = key.partition(".")
    assert len(ident) == 40 and all(c in "0123456789abcdef" for c in ident)
    assert len(signature) == 43
    assert key != SessionStore()._get_new_session_key()


# -- encode / decode (SessionBase's, untouched) ------------------------------------------


def test_decode_reads_what_encode_wrote() -> None:
    session = SessionStore()
    data = {"a test key": "a test value"}
    assert session.decode(session.encode(data)) == data


@pytest.mark.parametrize(
    "encoded",
    [base64.b64encode(b"flaskdj:alkdjf").decode("ascii"), "bad:encoded:value"],
)
def test_decode_failure_is_empty_and_logged_as_suspicious(
    encoded: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="django.security.SuspiciousSession"):
        assert SessionStore().decode(encoded) == {}
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("django.security")]
    assert any("Session data corrupted" in message for message in messages)


def test_decode_of_signed_bytes_the_serializer_rejects_is_empty() -> None:
    session = SessionStore()
    encoded = signing.TimestampSigner(salt=session.key_salt).sign(b"invalid data")
    assert session.decode(encoded) == {}


# -- expiry arithmetic -------------------------------------------------------------------


async def test_default_expiry_is_the_cookie_age(api: Api) -> None:
    session = SessionStore()
    assert await api.get_expiry_age(session) == settings.SESSION_COOKIE_AGE
    await api.set_expiry(session, 0)  # browser-close sessions still report the cookie age
    assert await api.get_expiry_age(session) == settings.SESSION_COOKIE_AGE
    with override_settings(SESSION_COOKIE_AGE=123):
        assert await api.get_expiry_age(SessionStore()) == 123


@pytest.mark.parametrize("kind", ["seconds", "timedelta", "datetime"])
async def test_custom_expiry_age_and_date(
    api: Api, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    modification = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: modification)  # timedelta reads the clock
    session = SessionStore()
    value: object = {
        "seconds": 10,
        "timedelta": timedelta(seconds=10),
        "datetime": modification + timedelta(seconds=10),
    }[kind]
    await api.set_expiry(session, value)
    expected = modification + timedelta(seconds=10)
    assert await api.get_expiry_date(session, modification=modification) == expected
    assert await api.get_expiry_age(session, modification=modification) == 10


async def test_set_expiry_none_restores_the_default(api: Api) -> None:
    session = SessionStore()
    await api.set_expiry(session, None)  # nothing to remove: no error
    await api.set_expiry(session, 10)
    await api.set_expiry(session, None)
    assert await api.get_expiry_age(session) == settings.SESSION_COOKIE_AGE
    assert await api.has_key(session, "_session_expiry") is False


@pytest.mark.parametrize("at_close", [False, True])
async def test_expire_at_browser_close(api: Api, at_close: bool) -> None:
    session = SessionStore()
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=at_close):
        assert await api.get_expire_at_browser_close(session) is at_close
        await api.set_expiry(session, 10)
        assert await api.get_expire_at_browser_close(session) is False
        await api.set_expiry(session, 0)
        assert await api.get_expire_at_browser_close(session) is True
        await api.set_expiry(session, None)
        assert await api.get_expire_at_browser_close(session) is at_close


# -- expiry reaches the stored record ----------------------------------------------------


@pytest.mark.parametrize("past", ["timedelta", "datetime", "seconds"])
async def test_an_expiry_in_the_past_expires_the_session_at_once(api: Api, past: str) -> None:
    session = SessionStore()
    await api.set(session, "foo", "bar")
    value = {
        "timedelta": -timedelta(seconds=10),
        "datetime": timezone.now() - timedelta(seconds=10),
        "seconds": -10,
    }[past]
    await api.set_expiry(session, value)
    await api.save(session)
    key = session.session_key

    later = SessionStore(key)
    assert await api.has_key(later, "foo") is False
    assert later.session_key is None
    assert await api.exists(later, key) is False


@pytest.mark.parametrize(
    ("value", "lifetime"),
    [
        (30, 30),
        (timedelta(seconds=30), 30),
        ("datetime+30", 30),
        (0, None),  # browser close: the record still lives SESSION_COOKIE_AGE
        (None, None),
    ],
    ids=["seconds", "timedelta", "datetime", "zero", "none"],
)
@memory_only
async def test_set_expiry_decides_when_the_record_expires(
    api: Api, backend: Backend, value: object, lifetime: int | None
) -> None:
    if value == "datetime+30":
        value = timezone.now() + timedelta(seconds=30)
    lifetime = lifetime or settings.SESSION_COOKIE_AGE
    assert lifetime is not None
    session = SessionStore()
    await api.set(session, "foo", "bar")
    await api.set_expiry(session, value)
    await api.save(session)
    key = session.session_key
    assert key is not None

    assert backend.expires_in(key) == pytest.approx(lifetime, abs=2)
    backend.clock.offset = lifetime - 3
    assert (await reopened(api, key))["foo"] == "bar"
    backend.clock.offset = lifetime + 3
    assert await reopened(api, key) == {}
    assert await api.exists(SessionStore(), key) is False


@memory_only
async def test_set_expiry_timedelta_is_kept_as_its_deadline(api: Api, backend: Backend) -> None:
    session = SessionStore()
    await api.set_expiry(session, timedelta(seconds=30))
    await api.save(session)
    stored_expiry = datetime.fromisoformat(
        (await reopened(api, session.session_key))["_session_expiry"]
    )
    assert abs((stored_expiry - timezone.now()).total_seconds() - 30) < 2
    assert backend.expires_in(session.session_key) == pytest.approx(30, abs=2)


@memory_only
@pytest.mark.parametrize("at_close", [False, True])
async def test_the_cookie_age_setting_decides_the_default_lifetime(
    api: Api, backend: Backend, at_close: bool
) -> None:
    with override_settings(SESSION_COOKIE_AGE=60, SESSION_EXPIRE_AT_BROWSER_CLOSE=at_close):
        session = SessionStore()
        await api.set(session, "a", 1)
        await api.save(session)
        assert await api.get_expiry_age(session) == 60
        assert await api.get_expire_at_browser_close(session) is at_close
        assert backend.expires_in(session.session_key) == pytest.approx(60, abs=2)
        backend.clock.offset = 57
        assert await reopened(api, session.session_key) == {"a": 1}
        backend.clock.offset = 63
        assert await reopened(api, session.session_key) == {}


@pytest.mark.parametrize("backend", ["file"], indirect=True)
async def test_a_one_second_expiry_really_expires(api: Api) -> None:
    session = SessionStore()
    await api.set(session, "foo", "bar")
    await api.set_expiry(session, 1)
    await api.save(session)
    key = session.session_key
    assert await reopened(api, key) == {"foo": "bar", "_session_expiry": 1}
    await asyncio.sleep(1.5)
    assert await reopened(api, key) == {}
    assert await api.exists(SessionStore(), key) is False


# -- expired records and clearsessions ---------------------------------------------------


async def _live_and_expired(api: Api) -> tuple[str, str]:
    live = SessionStore()
    await api.set(live, "key", "value")
    await api.set_expiry(live, 3600)
    await api.save(live)
    expired = SessionStore()
    await api.set(expired, "key", "value")
    await api.set_expiry(expired, -3600)
    await api.save(expired)
    assert live.session_key is not None and expired.session_key is not None
    return live.session_key, expired.session_key


def test_clearsessions_command_removes_expired_records_only(backend: Backend) -> None:
    live = SessionStore()
    live["foo"] = "bar"
    live.set_expiry(3600)
    live.save()
    expired = SessionStore()
    expired["foo"] = "bar"
    expired.set_expiry(-3600)
    expired.save()
    plain = SessionStore()
    plain["foo"] = "bar"
    plain.save()
    assert len(backend.records()) == 3

    call_command("clearsessions")

    left = {found.key for found in backend.records()}
    assert left == {raw_id(live.session_key), raw_id(plain.session_key)}
    assert SessionStore(live.session_key)["foo"] == "bar"


def test_clearsessions_with_a_zero_cookie_age_removes_default_sessions(
    backend: Backend,
) -> None:
    with override_settings(SESSION_COOKIE_AGE=0):
        live = SessionStore()
        live["foo"] = "bar"
        live.set_expiry(3600)
        live.save()
        plain = SessionStore()
        plain["foo"] = "bar"
        plain.save()  # lives "SESSION_COOKIE_AGE" (none) from now: expired at once
        assert len(backend.records()) == 2
        call_command("clearsessions")
    assert [found.key for found in backend.records()] == [raw_id(live.session_key)]


async def test_clear_expired(api: Api, backend: Backend) -> None:
    live, expired = await _live_and_expired(api)
    assert len(backend.records()) == 2
    await api.clear_expired(SessionStore())
    assert [found.key for found in backend.records()] == [raw_id(live)]
    assert await reopened(api, live) == {"key": "value", "_session_expiry": 3600}


# -- concurrent requests -----------------------------------------------------------------


async def test_a_save_never_resurrects_a_session_deleted_meanwhile(
    api: Api, backend: Backend
) -> None:
    first = SessionStore()
    await api.set(first, "test_data", "value1")
    await api.save(first, must_create=True)
    key = first.session_key

    await api.delete(SessionStore(key))  # a logout in another request

    await api.set(first, "test_data", "value2")
    with pytest.raises(UpdateError):
        await api.save(first)
    assert await api.load(first) == {}
    assert first.session_key is None
    assert await api.exists(first, key) is False
    assert backend.records() == []


async def test_concurrent_saves_of_different_keys_both_survive(api: Api) -> None:
    key = (await stored(api, base=0)).session_key
    one, two = SessionStore(key), SessionStore(key)
    await api.set(one, "a", 1)  # both load the record before either saves
    await api.set(two, "b", 2)

    await api.save(one)
    await api.save(two)

    assert one.session_key == two.session_key == key
    assert await reopened(api, key) == {"base": 0, "a": 1, "b": 2}
    assert dict(await api.items(two)) == {"base": 0, "a": 1, "b": 2}


@pytest.mark.parametrize("deleter_first", [True, False])
async def test_a_concurrent_delete_and_set_both_survive(api: Api, deleter_first: bool) -> None:
    key = (await stored(api, gone="x", kept="y")).session_key
    deleter, setter = SessionStore(key), SessionStore(key)
    assert await api.pop(deleter, "gone") == "x"
    await api.set(setter, "new", "z")

    for session in (deleter, setter) if deleter_first else (setter, deleter):
        await api.save(session)

    assert await reopened(api, key) == {"kept": "y", "new": "z"}


async def test_modified_set_by_hand_saves_values_changed_in_place(api: Api) -> None:
    key = (await stored(api, cart=[1], other="x")).session_key
    concurrent = SessionStore(key)
    await api.set(concurrent, "other", "y")
    session = SessionStore(key)
    (await api.get(session, "cart")).append(2)  # invisible to the session...
    session.modified = True  # ...until the app says so: every key counts as changed
    await api.save(concurrent)
    await api.save(session)
    assert (await reopened(api, key))["cart"] == [1, 2]


async def test_clear_keeps_the_keys_a_concurrent_request_added(api: Api) -> None:
    key = (await stored(api, a=1, b=2)).session_key
    clearing = SessionStore(key)
    assert await api.get(clearing, "a") == 1  # loaded before the other request saves
    clearing.clear()
    adding = SessionStore(key)
    await api.set(adding, "c", 3)
    await api.save(adding)

    await api.save(clearing)

    assert await reopened(api, key) == {"c": 3}


# -- empty sessions ----------------------------------------------------------------------


async def test_an_emptied_session_saved_stays_stored_empty(api: Api, backend: Backend) -> None:
    session = await stored(api, foo="bar", other=1)
    key = session.session_key
    await api.pop(session, "foo")
    await api.pop(session, "other")
    await api.save(session)

    assert session.session_key == key
    assert dict(await api.items(session)) == {}
    later = SessionStore(key)
    assert await api.load(later) == {}
    assert later.session_key == key  # a stored empty session keeps its key
    assert await api.exists(later, key) is True
    assert len(backend.records()) == 1


def test_a_cleared_session_saved_stays_stored_empty() -> None:
    session = SessionStore()
    session["foo"] = "bar"
    session.save()
    key = session.session_key
    session.clear()
    session.save()
    assert session.session_key == key
    assert session.exists(key) is True
    assert SessionStore(key).load() == {}


async def test_an_untouched_session_under_a_dead_key_is_not_stored(
    api: Api, backend: Backend
) -> None:
    dead = await stored(api, a=1)
    await api.delete(dead)
    for key in (dead.session_key, f"{raw_id(dead.session_key)}.{'A' * 43}"):
        session = SessionStore(key)
        await api.save(session)  # as SESSION_SAVE_EVERY_REQUEST does for every request
        assert session.session_key is None
    assert backend.records() == []

    session = SessionStore(dead.session_key)
    await api.set(session, "b", 2)
    await api.save(session)
    assert session.session_key not in (None, dead.session_key)
    assert await reopened(api, session.session_key) == {"b": 2}


# -- signed keys -------------------------------------------------------------------------


def _bad_keys(real: str | None) -> dict[str, str]:
    assert real is not None
    ident, _, signature = real.partition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return {
        "raw_id": ident,
        "forged_signature": f"{ident}.{'A' * 43}",
        "garbled_signature": f"{ident}.{flipped}",
        "other_id": f"{'0' * 40}.{signature}",
        "unrelated_key": _signed_by(UNRELATED_SECRET, ident),
        "not_a_key": "someunknownkey",
        "path": "../../etc/passwd",
    }


def _signed_by(secret: str, ident: str) -> str:
    return Signer(secret).sign(ident)


@memory_only
@pytest.mark.parametrize(
    "bad",
    [
        "raw_id",
        "forged_signature",
        "garbled_signature",
        "other_id",
        "unrelated_key",
        "not_a_key",
        "path",
    ],
)
async def test_a_key_that_does_not_verify_is_never_looked_up(
    api: Api, backend: Backend, bad: str
) -> None:
    real = await stored(api, secret="data")
    real_key = real.session_key
    key = _bad_keys(real_key)[bad]
    assert backend.memory is not None
    backend.memory.asked.clear()

    session = SessionStore(key)
    assert await api.get(session, "secret") is None
    assert session.session_key is None
    assert await api.exists(session, key) is False
    await api.delete(session, key)
    assert backend.memory.asked == []

    # A save under it makes a new session; the real one is untouched.
    await api.set(session, "mine", 1)
    await api.save(session)
    assert session.session_key not in (None, key, real_key)
    assert await reopened(api, real_key) == {"secret": "data"}


async def test_a_raw_id_does_not_reach_the_record_on_any_store(api: Api) -> None:
    real = await stored(api, secret="data")
    ident = raw_id(real.session_key)
    assert await reopened(api, ident) == {}
    assert await api.exists(SessionStore(), ident) is False
    await api.delete(SessionStore(), ident)
    assert await reopened(api, real.session_key) == {"secret": "data"}


async def test_a_key_signed_with_a_fallback_secret_loads_after_rotation(api: Api) -> None:
    with override_settings(SECRET_KEY=OLD_SECRET, SECRET_KEY_FALLBACKS=[]):
        old_key = (await stored(api, user=7)).session_key

    with override_settings(SECRET_KEY=NEW_SECRET, SECRET_KEY_FALLBACKS=[OLD_SECRET]):
        session = SessionStore(old_key)
        assert dict(await api.items(session)) == {"user": 7}
        assert await api.exists(session, old_key) is True
        await api.set(session, "after", True)
        await api.save(session)
        new_key = session.session_key
        assert new_key is not None
        assert raw_id(new_key) == raw_id(old_key)  # the same record, re-signed

    with override_settings(SECRET_KEY=NEW_SECRET, SECRET_KEY_FALLBACKS=[]):
        assert await reopened(api, new_key) == {"user": 7, "after": True}
        assert await reopened(api, old_key) == {}  # the fallback is gone: so is the old key


async def test_a_key_signed_with_an_unrelated_secret_does_not_load(api: Api) -> None:
    with override_settings(SECRET_KEY=UNRELATED_SECRET, SECRET_KEY_FALLBACKS=[]):
        foreign = (await stored(api, user=7)).session_key

    with override_settings(SECRET_KEY=NEW_SECRET, SECRET_KEY_FALLBACKS=[OLD_SECRET]):
        session = SessionStore(foreign)
        assert dict(await api.items(session)) == {}
        assert session.session_key is None
        assert await api.exists(session, foreign) is False


async def test_delete_accepts_a_key_signed_with_a_fallback_secret(api: Api) -> None:
    with override_settings(SECRET_KEY=OLD_SECRET, SECRET_KEY_FALLBACKS=[]):
        old_key = (await stored(api, user=7)).session_key
    with override_settings(SECRET_KEY=NEW_SECRET, SECRET_KEY_FALLBACKS=[OLD_SECRET]):
        await api.delete(SessionStore(), old_key)
        assert await api.exists(SessionStore(), old_key) is False
    with override_settings(SECRET_KEY=OLD_SECRET, SECRET_KEY_FALLBACKS=[]):
        assert await reopened(api, old_key) == {}
