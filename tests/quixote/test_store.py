"""`SessionGuardStore` in one process: round trips without pickle, the merge of concurrent
changes, the corruption policy, outages, and the admin methods."""

from __future__ import annotations

import datetime
import logging
import pickle
import time
import uuid
from pathlib import Path

import pytest
from quixote.http_request import HTTPRequest

from sessionguard import CorruptionPolicy
from sessionguard.codec import Envelope, encode, record_keys
from sessionguard.errors import CorruptSessionError, StoreUnavailableError
from sessionguard.quixote import SessionGuardStore
from sessionguard.stores import FileStore, MemoryStore
from sessionguard.stores.redis import RedisStore
from tests.record_files import record_path
from tests.servers import free_port

from .conftest import SECRET, AppDictSession, AppSession, new_session

SID = "q1Ab2Cd3Ef4"


def test_a_session_round_trips_with_its_types_and_without_init(
    store: SessionGuardStore, in_request: HTTPRequest, publisher: object
) -> None:
    when = datetime.datetime(2026, 5, 1, 12, 30, tzinfo=datetime.UTC)
    token = uuid.uuid4()
    session = new_session(AppSession, SID, user="ada", cart=["tea"])
    session.seen = {"when": when, "pair": (1, "b"), "tags": {"x"}, "token": token}
    store.save_session(session)
    in_request.environ["REMOTE_ADDR"] = "203.0.113.9"  # __init__ would read this

    loaded = store.load_session(SID)

    assert type(loaded) is AppSession
    assert loaded.id == SID and loaded.user == "ada" and loaded.cart == ["tea"]
    assert loaded.seen == {"when": when, "pair": (1, "b"), "tags": {"x"}, "token": token}
    assert loaded.get_remote_address() == "192.0.2.7"  # stored, not re-read by __init__
    assert loaded.get_creation_time() == session.get_creation_time()
    assert loaded.has_form_token("nope") is False  # the class's methods work


def test_a_dict_session_keeps_items_and_attributes_apart(
    files: FileStore, in_request: object
) -> None:
    store = SessionGuardStore(files, secret_key=SECRET, session_class=AppDictSession)
    session = new_session(AppDictSession, SID, user="ada")
    session["cart"] = ["tea"]
    session["user"] = "an item, not the attribute"
    store.save_session(session)

    loaded = store.load_session(SID)

    assert type(loaded) is AppDictSession
    assert dict(loaded) == {"cart": ["tea"], "user": "an item, not the attribute"}
    assert loaded.user == "ada"


def test_an_attribute_that_cannot_be_stored_is_named_and_nothing_is_written(
    store: SessionGuardStore, in_request: object
) -> None:
    session = new_session(AppSession, SID, user=object())

    with pytest.raises(TypeError, match="session attribute 'user' of type object"):
        store.save_session(session)
    assert not store.has_session(SID)


def test_an_item_that_cannot_be_stored_is_named(files: FileStore, in_request: object) -> None:
    store = SessionGuardStore(files, secret_key=SECRET, session_class=AppDictSession)
    session = new_session(AppDictSession, SID)
    session["handler"] = print
    with pytest.raises(TypeError, match="session item 'handler'"):
        store.save_session(session)
    del session["handler"]
    session[3] = "x"
    with pytest.raises(TypeError, match="item key 3 of type int"):
        store.save_session(session)


def test_concurrent_requests_keep_each_others_changes(
    store: SessionGuardStore, in_request: object
) -> None:
    store.save_session(new_session(AppSession, SID, user="ada", cart=["tea"], note="old"))
    first, second = store.load_session(SID), store.load_session(SID)

    first.cart.append("milk")  # changed in place
    del first.note
    first._access_time += 5
    token_one = first.create_form_token()
    second.user = "bob"
    second.theme = "dark"
    second._access_time += 3
    token_two = second.create_form_token()
    store.save_session(first)
    store.save_session(second)

    merged = store.load_session(SID)
    assert merged.user == "bob" and merged.theme == "dark" and merged.cart == ["tea", "milk"]
    assert not hasattr(merged, "note")
    assert merged._access_time == first._access_time  # the newest, whoever saved last
    assert merged.has_form_token(token_one) and merged.has_form_token(token_two)


def test_dict_items_merge_like_keys(files: FileStore, in_request: object) -> None:
    store = SessionGuardStore(files, secret_key=SECRET, session_class=AppDictSession)
    session = new_session(AppDictSession, SID)
    session.update({"a": 1, "b": 2})
    store.save_session(session)
    first, second = store.load_session(SID), store.load_session(SID)
    first["c"] = 3
    del second["a"]
    second["b"] = 20
    store.save_session(first)
    store.save_session(second)

    assert dict(store.load_session(SID)) == {"b": 20, "c": 3}
    # Read by a class that is no mapping, the items are not its to delete.
    plain = SessionGuardStore(files, secret_key=SECRET, session_class=AppSession)
    without_items = plain.load_session(SID)
    without_items.user = "ada"
    plain.save_session(without_items)
    assert dict(store.load_session(SID)) == {"b": 20, "c": 3}


def test_a_second_save_of_one_object_keeps_what_others_merged(
    store: SessionGuardStore, in_request: object
) -> None:
    store.save_session(new_session(AppSession, SID, user="ada"))
    first, second = store.load_session(SID), store.load_session(SID)
    second.theme = "dark"
    store.save_session(second)
    first.cart.append("tea")
    store.save_session(first)  # merges theme in; `first` itself has no theme
    first.cart.append("jam")
    store.save_session(first)

    final = store.load_session(SID)
    assert final.theme == "dark" and final.cart == ["tea", "jam"]


def test_logout_wins_over_a_concurrent_save(store: SessionGuardStore, in_request: object) -> None:
    store.save_session(new_session(AppSession, SID, user="ada"))
    working, leaving = store.load_session(SID), store.load_session(SID)
    working.cart.append("tea")

    store.delete_session(leaving)
    store.save_session(working)

    assert store.load_session(SID) is None and not store.has_session(SID)


def test_a_bogus_id_is_no_session(store: SessionGuardStore) -> None:
    assert store.load_session("../../etc/passwd", "default") == "default"
    assert store.load_session("", None) is None
    assert not store.has_session("a b")
    assert SessionGuardStore.is_multiprocess_safe and SessionGuardStore.is_thread_safe


def _plant(files: FileStore, raw: bytes) -> Path:
    path = record_path(files, SID)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"\x00garbage that is no record", "bad_magic"),
        (pickle.dumps({"user": "ada"}, 4), "legacy_pickle"),
    ],
)
def test_a_corrupt_or_foreign_file_is_reset_with_a_warning(
    store: SessionGuardStore,
    files: FileStore,
    caplog: pytest.LogCaptureFixture,
    raw: bytes,
    reason: str,
) -> None:
    path = _plant(files, raw)

    with caplog.at_level(logging.WARNING, logger="sessionguard"):
        assert store.load_session(SID, "default") == "default"

    assert not path.exists()
    assert any(reason in r.getMessage() for r in caplog.records), caplog.text


def test_a_directory_session_store_pickle_is_reset(
    store: SessionGuardStore, files: FileStore, in_request: object, caplog: pytest.LogCaptureFixture
) -> None:
    # Exactly what DirectorySessionStore.save_session writes: the object, protocol 4.
    path = _plant(files, pickle.dumps(new_session(AppSession, SID, user="ada"), 4))

    with caplog.at_level(logging.WARNING, logger="sessionguard"):
        assert store.load_session(SID) is None

    assert not path.exists()
    assert "legacy_pickle" in caplog.text


def test_a_record_signed_with_another_secret_is_corrupt(
    store: SessionGuardStore, files: FileStore
) -> None:
    forged = {"attributes": {"user": "admin"}, "items": {}, "saved_at": time.time()}
    key = record_keys([b"not the app's secret"])[0]
    files.save(SID, encode(Envelope(forged, time.time()), key=key), expires_at=time.time() + 60)
    unsigned = encode(Envelope(forged, time.time()))

    assert store.load_session(SID) is None
    files.save(SID, unsigned, expires_at=time.time() + 60)
    assert store.load_session(SID) is None
    assert files.load(SID) is None


def test_reject_raises_and_leaves_the_record(files: FileStore) -> None:
    store = SessionGuardStore(files, secret_key=SECRET, policy=CorruptionPolicy("reject"))
    path = _plant(files, b"\x00garbage")

    with pytest.raises(CorruptSessionError) as caught:
        store.load_session(SID)

    assert caught.value.reason == "bad_magic"
    assert path.exists()


def test_quarantine_moves_the_record_aside(files: FileStore, tmp_path: Path) -> None:
    aside = tmp_path / "aside"
    policy = CorruptionPolicy(quarantine_dir=aside)
    store = SessionGuardStore(files, secret_key=SECRET, policy=policy)
    path = _plant(files, b"\x00garbage")

    assert store.load_session(SID) is None

    assert not path.exists()
    assert [p.read_bytes() for p in aside.iterdir()] == [b"\x00garbage"]


def test_a_save_over_a_corrupt_record_writes_the_whole_session(
    store: SessionGuardStore, files: FileStore, in_request: object
) -> None:
    store.save_session(new_session(AppSession, SID, user="ada"))
    session = store.load_session(SID)
    session.cart.append("tea")
    _plant(files, b"\x00garbage")

    store.save_session(session)

    again = store.load_session(SID)
    assert again.user == "ada" and again.cart == ["tea"]


def test_an_outage_is_store_unavailable(in_request: object) -> None:
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    store = SessionGuardStore(dead, secret_key=SECRET)
    session = new_session(AppSession, SID, user="ada")

    with pytest.raises(StoreUnavailableError):
        store.load_session(SID)
    with pytest.raises(StoreUnavailableError):
        store.save_session(session)
    with pytest.raises(StoreUnavailableError):
        store.delete_session(session)
    dead.close()


def test_iter_sessions_lists_this_stores_sessions_only(
    store: SessionGuardStore, files: FileStore, in_request: object
) -> None:
    for sid in ("aaaaaaaaaaa", "bbbbbbbbbbb"):
        store.save_session(new_session(AppSession, sid, user=sid[0]))
    files.save("ccccccccccc", b"\x00garbage", expires_at=time.time() + 60)
    middleware_record = encode(Envelope({"k": 1}, 0.0), key=record_keys([SECRET.encode()])[0])
    files.save("ddddddddddd", middleware_record, expires_at=time.time() + 60)

    listed = {sid: session.user for sid, session in store.iter_sessions()}

    assert listed == {"aaaaaaaaaaa": "a", "bbbbbbbbbbb": "b"}
    assert files.load("ccccccccccc") is not None  # browsing destroys nothing


def test_delete_old_sessions_goes_by_the_last_save(files: FileStore, in_request: object) -> None:
    now = [1_800_000_000.0]
    store = SessionGuardStore(
        files, secret_key=SECRET, session_class=AppSession, clock=lambda: now[0]
    )
    store.save_session(new_session(AppSession, "oldoldoldol", user="a"))
    now[0] += 600
    store.save_session(new_session(AppSession, "newnewnewne", user="b"))
    now[0] += 100
    files.save("foreignfore", b"\x00garbage", expires_at=time.time() + 60)

    assert store.delete_old_sessions(5) == (1, 1)

    assert store.load_session("oldoldoldol") is None
    assert store.load_session("newnewnewne").user == "b"
    assert files.load("foreignfore") is not None


def test_it_works_on_any_store(in_request: object) -> None:
    store = SessionGuardStore(MemoryStore(), secret_key=[SECRET, "an older secret"])
    store.save_session(new_session(AppSession, SID, user="ada"))

    assert store.load_session(SID).user == "ada"
