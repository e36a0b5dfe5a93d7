"""A Django user's sessions: the engine indexes `_auth_user_id` by default, so "show my
sessions" and "log out my other devices" are a few lines with `UserSessions`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

from sessionguard import FileStore
from sessionguard.ops import key_hash
from sessionguard.users import UserSessions

from .conftest import PASSWORD


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    store = FileStore(tmp_path / "sessions")
    with override_settings(SESSIONGUARD_STORE=store):
        yield store
    store.close()


def pk_of(username: str) -> str:
    from django.contrib.auth.models import User  # only once Django is configured

    return str(User.objects.get(username=username).pk)


def logged_in(username: str) -> Client:
    client = Client()
    assert client.post("/login", {"username": username, "password": PASSWORD}).json()["ok"]
    return client


def test_log_out_my_other_devices_in_a_django_project(user: str, store: FileStore) -> None:
    phone, laptop = logged_in(user), logged_in(user)
    pk = pk_of(user)
    users = UserSessions(store, settings.SECRET_KEY, user_key="_auth_user_id")

    assert len(users.sessions(pk)) == 2
    # In the laptop's request this would be keep=request.session.session_key.
    laptop_key = laptop.cookies[settings.SESSION_COOKIE_NAME].value
    assert users.revoke(pk, keep=laptop_key) == 1

    assert laptop.get("/show").json()["user"] == user
    assert phone.get("/show").json()["user"] is None
    assert [s.session for s in users.sessions(pk)] == [key_hash(laptop_key.split(".")[0])]


def test_logout_drops_the_session_from_the_users_list(user: str, store: FileStore) -> None:
    client = logged_in(user)
    pk = pk_of(user)
    users = UserSessions(store, settings.SECRET_KEY, user_key="_auth_user_id")
    assert len(users.sessions(pk)) == 1
    client.post("/logout")
    assert users.sessions(pk) == []


def test_sessionguard_options_cipher_encrypts_the_projects_sessions(
    user: str, store: FileStore
) -> None:
    from sessionguard.cipher import RecordCipher

    with override_settings(SESSIONGUARD_OPTIONS={"cipher": RecordCipher([RecordCipher.new_key()])}):
        client = logged_in(user)
        assert client.get("/show").json()["user"] == user
    stored = [p.read_bytes() for p in Path(store.directory).rglob("*") if p.is_file()]
    assert stored and all(b"_auth_user_id" not in raw for raw in stored)


def test_record_devices_notes_the_browser_and_network_of_a_django_login(
    user: str, store: FileStore
) -> None:
    with override_settings(SESSIONGUARD_OPTIONS={"record_devices": True}):
        client = Client(HTTP_USER_AGENT="Mozilla/5.0 Firefox/130.0")
        assert client.post("/login", {"username": user, "password": PASSWORD}).json()["ok"]
        users = UserSessions(store, settings.SECRET_KEY, user_key="_auth_user_id")
        [shown] = users.sessions(pk_of(user))
    assert (shown.user_agent, shown.network) == ("Mozilla/5.0 Firefox/130.0", "127.0.0.0/24")


def test_sessionguard_options_hashed_ids_keep_the_session_key_out_of_the_store(
    user: str, store: FileStore
) -> None:
    from sessionguard.hashedids import HashedIds

    ids = HashedIds(HashedIds.new_key())
    with override_settings(SESSIONGUARD_OPTIONS={"hashed_ids": ids}):
        phone, laptop = logged_in(user), logged_in(user)
        assert laptop.get("/show").json()["user"] == user
        users = UserSessions(store, settings.SECRET_KEY, user_key="_auth_user_id", hashed_ids=ids)
        laptop_key = laptop.cookies[settings.SESSION_COOKIE_NAME].value
        assert users.revoke(pk_of(user), keep=laptop_key) == 1
        assert phone.get("/show").json()["user"] is None

    names = [p.name for p in Path(store.directory).rglob("*")]
    assert names and not any(laptop_key.split(".")[0] in name for name in names)
    assert [s.session for s in users.sessions(pk_of(user))] == [users.hash_of(laptop_key)]
