"""How the engine reads Django's settings: stores, options, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

from sessionguard import MemoryStore
from sessionguard.django import SessionMiddleware, SessionStore
from sessionguard.django.config import url_of
from sessionguard.errors import SessionRefusedError
from sessionguard.stores.sql import SQLStore


def test_django_default_keeps_sessions_in_the_projects_own_database() -> None:
    with override_settings(SESSIONGUARD_STORE="django://default"):
        session = SessionStore()
        session["user"] = "alice"
        session.save()
        store = session._engine.store
        assert isinstance(store, SQLStore)
        assert SessionStore(session.session_key)["user"] == "alice"

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sessionguard_sessions")
        assert cursor.fetchone()[0] >= 1


@pytest.mark.parametrize(
    ("database", "url"),
    [
        (
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "shop",
                "USER": "web",
                "PASSWORD": "p@ss word",
                "HOST": "db.internal",
                "PORT": "5433",
            },
            "postgresql+psycopg://web:p%40ss%20word@db.internal:5433/shop",
        ),
        (
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "shop",
                "USER": "web",
                "OPTIONS": {"sslmode": "require"},
            },
            "postgresql+psycopg://web@/shop?sslmode=require",
        ),
        (
            {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/app/db.sqlite3"},
            "sqlite:////srv/app/db.sqlite3",
        ),
    ],
)
def test_database_url_from_databases(database: dict[str, object], url: str) -> None:
    assert url_of(database) == url


@pytest.mark.parametrize(
    "database",
    [
        {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        {"ENGINE": "django.db.backends.mysql", "NAME": "shop"},
    ],
)
def test_database_url_refuses_what_cannot_hold_sessions(database: dict[str, object]) -> None:
    with pytest.raises(ImproperlyConfigured):
        url_of(database)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"htps_only": True}, "unknown SessionMiddleware option 'htps_only'"),
        ({"max_age": 10}, r"SESSION_COOKIE_\* settings decide"),
        ({"legacy": "memcached"}, "must be 'db', 'cached_db', 'file'"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(
    options: dict[str, object], message: str
) -> None:
    with override_settings(SESSIONGUARD_OPTIONS=options, SESSIONGUARD_STORE=MemoryStore()):
        with pytest.raises(ImproperlyConfigured, match=message):
            SessionStore()


def test_an_unknown_store_url_is_refused() -> None:
    with override_settings(SESSIONGUARD_STORE="ftp://example.com/sessions"):
        with pytest.raises(ImproperlyConfigured, match="unknown store URL"):
            SessionStore()


def test_the_middleware_needs_the_engine() -> None:
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.db"):
        with pytest.raises(ImproperlyConfigured, match="sessionguard.django"):
            SessionMiddleware(lambda request: HttpResponse())


def test_a_session_over_max_size_is_413_and_the_stored_one_kept(tmp_path: Path) -> None:
    with override_settings(
        SESSIONGUARD_STORE=MemoryStore(), SESSIONGUARD_OPTIONS={"max_size": 1024}
    ):
        session = SessionStore()
        session["small"] = "x"
        session.save()
        key = session.session_key

        def view(request: HttpRequest) -> HttpResponse:
            request.session["big"] = "y" * 4096
            return HttpResponse("saved?")

        request = RequestFactory().get("/")
        request.COOKIES["sessionid"] = key
        response = SessionMiddleware(view)(request)
        assert response.status_code == 413
        assert dict(SessionStore(key).load()) == {"small": "x"}

        too_big = SessionStore(key)
        too_big["big"] = "y" * 4096
        with pytest.raises(SessionRefusedError) as refused:
            too_big.save()
        assert refused.value.status == 413


def test_modified_true_saves_values_changed_in_place() -> None:
    with override_settings(SESSIONGUARD_STORE=MemoryStore()):
        session = SessionStore()
        session["cart"] = ["book"]
        session.save()
        key = session.session_key

        first = SessionStore(key)
        first["cart"].append("pen")  # not seen by the session ...
        first.modified = True  # ... until the app says so, as Django asks
        other = SessionStore(key)
        other["theme"] = "dark"
        other.save()
        first.save()
        assert dict(SessionStore(key).load()) == {"cart": ["book", "pen"], "theme": "dark"}
