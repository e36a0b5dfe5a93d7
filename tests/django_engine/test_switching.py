"""Switching a project from Django's own engines without logging anyone out.

The users' sessions were written by `django.contrib.sessions.backends.db`, `cached_db`
or `file`; after the switch their `sessionid` cookies still name those records. With
`SESSIONGUARD_OPTIONS = {"legacy": "db"}` (or "cached_db", "file") the first request
with such a cookie is adopted: the old session's data moves into a new sessionguard
session under a signed key, and the old record is left exactly as it was.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from sessionguard import FileStore
from sessionguard.cli import main as sessionguard_command
from sessionguard.legacy import LegacyCookie

from .conftest import PASSWORD


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    store = FileStore(tmp_path / "sessions")
    with override_settings(SESSIONGUARD_STORE=store):
        yield store


def old_session(engine: str, user: str) -> tuple[str, dict[str, Any]]:
    """A logged-in session written by Django's own `engine`; (its key, its data)."""
    from django.contrib.auth.models import User

    old = import_module(f"django.contrib.sessions.backends.{engine}").SessionStore()
    account = User.objects.get(username=user)
    old["_auth_user_id"] = str(account.pk)
    old["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    old["_auth_user_hash"] = account.get_session_auth_hash()
    old["cart"] = ["book"]
    old.save()
    return old.session_key, dict(old.items())


def old_record(engine: str, key: str) -> object:
    """What Django's engine holds for `key`, read with its own code."""
    if engine == "file":
        return (Path(settings.SESSION_FILE_PATH) / f"sessionid{key}").read_bytes()
    from django.contrib.sessions.models import Session

    row = Session.objects.get(session_key=key)
    return (row.session_data, row.expire_date)


@pytest.mark.parametrize("engine", ["db", "cached_db", "file"])
def test_an_old_cookie_is_adopted_once_and_its_record_left_alone(
    engine: str, user: str, store: FileStore
) -> None:
    key, data = old_session(engine, user)
    before = old_record(engine, key)

    client = Client()
    client.cookies["sessionid"] = key
    with override_settings(SESSIONGUARD_OPTIONS={"legacy": engine}):
        shown = client.get("/show").json()
        assert shown["user"] == user
        assert shown["data"]["cart"] == ["book"]
        new_key = client.cookies["sessionid"].value
        assert new_key != key and new_key.count(".") == 1  # a signed sessionguard key
        # The adopted session is a sessionguard one from now on.
        assert client.post("/set/step", {"value": "2"}).status_code == 200
        assert client.get("/show").json()["data"] == {**data, "step": "2"}

        # The old record is untouched; a replay of the old cookie adopts nothing.
        assert old_record(engine, key) == before
        replay = Client()
        replay.cookies["sessionid"] = key
        assert replay.get("/show").json() == {"data": {}, "user": None}


def test_sessions_copied_by_migrate_are_adopted(user: str, store: FileStore) -> None:
    key, data = old_session("db", user)
    database = settings.DATABASES["default"]["NAME"]
    out = io.StringIO()
    status = sessionguard_command(
        [
            "migrate",
            "--from",
            "django-db",
            str(database),
            "--to",
            os.fspath(store.directory),
            "--django-secret-key",
            settings.SECRET_KEY,
        ],
        out=out,
    )
    assert status == 0, out.getvalue()

    # No source to read from: only what `migrate` copied.
    with override_settings(SESSIONGUARD_OPTIONS={"legacy": LegacyCookie("sessionid")}):
        client = Client()
        client.cookies["sessionid"] = key
        assert client.get("/show").json() == {"data": data, "user": user}


def test_an_unknown_old_cookie_adopts_nothing_and_writes_nothing(store: FileStore) -> None:
    client = Client()
    client.cookies["sessionid"] = "abcdefghijklmnopqrstuvwxyz012345"
    with override_settings(SESSIONGUARD_OPTIONS={"legacy": "db"}):
        assert client.get("/show").json() == {"data": {}, "user": None}
    assert sum(1 for _ in store.scan()) == 0


def test_a_user_can_log_in_after_the_switch(user: str, store: FileStore) -> None:
    client = Client()
    with override_settings(SESSIONGUARD_OPTIONS={"legacy": "db"}):
        assert client.post("/login", {"username": user, "password": PASSWORD}).json()["ok"]
        assert client.get("/show").json()["user"] == user
