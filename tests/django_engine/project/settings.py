"""A real Django project on `sessionguard.django`, for the tests and for gunicorn.

`build()` returns the settings; the tests pass them to `settings.configure`, and gunicorn
(`DJANGO_SETTINGS_MODULE=project.settings`, run from `tests/django_engine`) gets them
from the environment through the module-level assignments at the bottom:

```
DJANGO_TEST_ENGINE     sessionguard (default), db or file: Django's own engines as peers
DJANGO_TEST_STORE      SESSIONGUARD_STORE (a directory or a URL)
DJANGO_TEST_DATABASE   the SQLite file (the db engine's sessions, auth's users)
DJANGO_TEST_DATABASE_URL  a PostgreSQL URL instead (postgresql://user@host:port/name)
DJANGO_TEST_SAVE_EVERY_REQUEST  1 for SESSION_SAVE_EVERY_REQUEST = True
DJANGO_TEST_FILE_PATH  SESSION_FILE_PATH (the file engine's directory)
DJANGO_TEST_CSRF_USE_SESSIONS  1 for CSRF_USE_SESSIONS = True (the CSRF token in the session)
```
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

SECRET_KEY = "django-test-" + "s" * 50


def build(
    *,
    engine: str = "sessionguard",
    store: str | None = None,
    database: str | None = None,
    database_url: str | None = None,
    save_every_request: bool = False,
    file_path: str | None = None,
    csrf_use_sessions: bool = False,
) -> dict[str, Any]:
    """The project's settings for one session engine and store."""
    sessions_middleware = (
        "sessionguard.django.SessionMiddleware"
        if engine == "sessionguard"
        else "django.contrib.sessions.middleware.SessionMiddleware"
    )
    databases: dict[str, dict[str, Any]]
    if database_url:
        url = urlsplit(database_url)
        databases = {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": url.path.lstrip("/"),
                "USER": url.username or "",
                "PASSWORD": url.password or "",
                "HOST": url.hostname or "",
                "PORT": str(url.port or ""),
            }
        }
    else:
        databases = {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": database or "django.sqlite3",
                # Several gunicorn workers write the db engine's sessions concurrently.
                "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
            }
        }
    return {
        "DEBUG": False,
        "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": ["127.0.0.1", "localhost", "testserver"],
        "ROOT_URLCONF": "tests.django_engine.project.urls"
        if __name__.startswith("tests.")
        else "project.urls",
        "INSTALLED_APPS": [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
        ],
        "MIDDLEWARE": [
            sessions_middleware,
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        "SESSION_ENGINE": "sessionguard.django"
        if engine == "sessionguard"
        else f"django.contrib.sessions.backends.{engine}",
        "SESSIONGUARD_STORE": store,
        "SESSION_FILE_PATH": file_path,
        "SESSION_SAVE_EVERY_REQUEST": save_every_request,
        "CSRF_USE_SESSIONS": csrf_use_sessions,
        "MESSAGE_STORAGE": "django.contrib.messages.storage.session.SessionStorage",
        "DATABASES": databases,
        # Fast hashing: the tests log in often, and the hash is not what they test.
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
        "USE_TZ": True,
        "LOGGING_CONFIG": None,
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
    }


if os.environ.get("DJANGO_SETTINGS_MODULE") == __name__:
    globals().update(
        build(
            engine=os.environ.get("DJANGO_TEST_ENGINE", "sessionguard"),
            store=os.environ.get("DJANGO_TEST_STORE"),
            database=os.environ.get("DJANGO_TEST_DATABASE"),
            database_url=os.environ.get("DJANGO_TEST_DATABASE_URL"),
            save_every_request=os.environ.get("DJANGO_TEST_SAVE_EVERY_REQUEST") == "1",
            file_path=os.environ.get("DJANGO_TEST_FILE_PATH"),
            csrf_use_sessions=os.environ.get("DJANGO_TEST_CSRF_USE_SESSIONS") == "1",
        )
    )
