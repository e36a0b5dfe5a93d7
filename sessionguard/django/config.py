"""The engine's configuration, read from Django's settings.

```python
SESSION_ENGINE = "sessionguard.django"
SESSIONGUARD_STORE = BASE_DIR / "sessions"      # or "redis://...", "sqlite:///...",
                                                # "postgresql+psycopg://...",
                                                # "django://default", or a store object
SESSIONGUARD_OPTIONS = {"policy": CorruptionPolicy("reject")}   # optional
```

Django's own settings mean what they mean for Django's engines: `SECRET_KEY` and
`SECRET_KEY_FALLBACKS` sign the session key and the records, `SESSION_COOKIE_AGE` is the
lifetime a save gives a session (unless `set_expiry()` says otherwise), and the cookie
settings shape the cookie `SessionMiddleware` sets. Settings are read when a session is
created, so `override_settings` works as it does for Django's engines; stores named by a
string are opened once per process and kept (their connection pools with them).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..core import SessionCore
from ..errors import ConfigurationError
from ..legacy import LegacyCookie
from ..options import SessionOptions, build_core, require_user_index
from ..sources.django import DjangoDBReader, DjangoFileReader
from ..stores.base import Store
from ..stores.file import DEFAULT_DIRECTORY
from ..target import open_store

__all__ = ["Engine", "current_engine", "database_url", "url_of"]

#: `SESSIONGUARD_OPTIONS` keys the engine reads itself; the others go to the core.
_ENGINE_OPTIONS = {"carry_in_flight", "legacy"}
#: Core options that Django's settings decide, so setting them here would be ambiguous.
_FROM_DJANGO = {"session_cookie", "max_age", "path", "same_site", "https_only", "domain"}
#: Where django.contrib.auth keeps the logged-in user's primary key (`SESSION_KEY`).
AUTH_USER_KEY = "_auth_user_id"
_LEGACY_ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "file": "django.contrib.sessions.backends.file",
}


@dataclass(frozen=True)
class Engine:
    """What every `SessionStore` of one configuration shares."""

    core: SessionCore
    store: Store
    #: `cycle_key()` lets requests still in flight on the old key save into the new one.
    carry_in_flight: bool


_lock = threading.Lock()  # guards the engine
_lock_stores = threading.Lock()  # guards the stores opened from strings (held inside _lock)
_stores: dict[str, Store] = {}
_current: tuple[tuple[Any, ...], Engine] | None = None


def current_engine() -> Engine:
    """The engine for Django's settings as they are now (built once per configuration)."""
    global _current
    options = getattr(settings, "SESSIONGUARD_OPTIONS", None) or {}
    target = getattr(settings, "SESSIONGUARD_STORE", None)
    config = (
        settings.SECRET_KEY,
        tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ())),
        settings.SESSION_COOKIE_NAME,
        settings.SESSION_COOKIE_AGE,
        settings.SESSION_COOKIE_PATH,
        settings.SESSION_COOKIE_DOMAIN,
        settings.SESSION_FILE_PATH,
        # Objects are compared by identity (and kept alive by this tuple, so an id is
        # never reused for another one while it is cached).
        target if isinstance(target, str | os.PathLike) else (id(target), target),
        (id(options), options),
    )
    current = _current
    if current is not None and current[0] == config:
        return current[1]
    with _lock:
        if _current is None or _current[0] != config:
            _current = (config, _build(target, options))
        return _current[1]


def _build(target: object, options: dict[str, Any]) -> Engine:
    if not settings.SECRET_KEY:
        raise ImproperlyConfigured(
            "sessionguard.django signs session keys and records with SECRET_KEY, which is empty"
        )
    unknown_django = sorted(set(options) & _FROM_DJANGO)
    if unknown_django:
        raise ImproperlyConfigured(
            f"SESSIONGUARD_OPTIONS sets {', '.join(unknown_django)}, which Django's own "
            "SESSION_COOKIE_* settings decide; set those instead"
        )
    core_options = {k: v for k, v in options.items() if k not in _ENGINE_OPTIONS}
    store = _store(target)
    if "user_key" not in core_options and getattr(store, "indexes_users", False):
        # Where django.contrib.auth keeps the logged-in user's primary key.
        core_options["user_key"] = AUTH_USER_KEY
    age = int(settings.SESSION_COOKIE_AGE)
    try:
        core = build_core(
            [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())],
            **cast(
                SessionOptions,
                {
                    # Django's engines have no absolute lifetime: a session lives as long
                    # as it is saved within SESSION_COOKIE_AGE (or its set_expiry()).
                    "absolute_timeout": None,
                    **core_options,
                    "session_cookie": settings.SESSION_COOKIE_NAME,
                    "max_age": age,
                    "idle_timeout": max(age, 1),
                    "path": settings.SESSION_COOKIE_PATH,
                    "domain": settings.SESSION_COOKIE_DOMAIN,
                    # Django's save() rewrites the record every time it is called.
                    "save_every_request": True,
                    "legacy": _legacy(options.get("legacy")),
                },
            ),
        )
        require_user_index(core, store)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"SESSIONGUARD_OPTIONS: {exc}") from exc
    # Django stores what save() is asked to store, empty sessions included.
    core.keep_empty = True
    return Engine(core, store, bool(options.get("carry_in_flight", True)))


def _store(target: object) -> Store:
    if target is None:
        target = DEFAULT_DIRECTORY
    if not isinstance(target, str | os.PathLike):
        return cast(Store, target)  # a ready store object
    text = os.fspath(target)
    if text.startswith("django://"):
        text = database_url(text.removeprefix("django://"))
    with _lock_stores:
        store = _stores.get(text)
        if store is None:
            try:
                store = _stores[text] = open_store(text)
            except ConfigurationError as exc:
                raise ImproperlyConfigured(f"SESSIONGUARD_STORE: {exc}") from exc
        return store


def database_url(alias: str = "default") -> str:
    """A SQLAlchemy URL for the database Django knows as `alias` (in `DATABASES`), so that
    `SESSIONGUARD_STORE = "django://default"` keeps the sessions in the project's own
    database, in sessionguard's own table (`sessionguard_sessions`)."""
    try:
        database = settings.DATABASES[alias or "default"]
    except KeyError:
        raise ImproperlyConfigured(
            f"SESSIONGUARD_STORE names the database {alias!r}, which is not in DATABASES"
        ) from None
    return url_of(database, alias)


def url_of(database: Mapping[str, Any], alias: str = "default") -> str:
    """The SQLAlchemy URL of one `DATABASES` entry (PostgreSQL or a SQLite file)."""
    engine = str(database.get("ENGINE", ""))
    name = str(database.get("NAME") or "")
    if engine.endswith("sqlite3"):
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ImproperlyConfigured(
                f"the database {alias!r} is not a SQLite file; sessions need one that "
                "every worker process shares"
            )
        return f"sqlite:///{os.path.abspath(name)}"
    if engine.endswith(("postgresql", "postgis")):
        user = quote(str(database.get("USER") or ""), safe="")
        password = quote(str(database.get("PASSWORD") or ""), safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = str(database.get("HOST") or "")
        port = str(database.get("PORT") or "")
        location = f"{host}:{port}" if port else host
        url = f"postgresql+psycopg://{credentials}{location}/{quote(name, safe='')}"
        sslmode = (database.get("OPTIONS") or {}).get("sslmode")
        return f"{url}?sslmode={sslmode}" if sslmode else url
    raise ImproperlyConfigured(
        f"SESSIONGUARD_STORE = 'django://{alias}': the database engine {engine!r} is not "
        "supported; use PostgreSQL or SQLite, or give a SQLAlchemy URL"
    )


def _legacy(value: object) -> LegacyCookie | None:
    """`"legacy": "db" | "cached_db" | "file"` reads the sessions of the engine the
    project used before, read-only, so that their users stay logged in; a `LegacyCookie`
    is used as it is."""
    if value is None or isinstance(value, LegacyCookie):
        return value
    if value not in _LEGACY_ENGINES and value not in _LEGACY_ENGINES.values():
        raise ImproperlyConfigured(
            f"SESSIONGUARD_OPTIONS['legacy'] must be 'db', 'cached_db', 'file' or a "
            f"LegacyCookie, got {value!r}"
        )
    age = int(settings.SESSION_COOKIE_AGE)
    secret = str(settings.SECRET_KEY)
    source: DjangoFileReader | DjangoDBReader
    if str(value).endswith("file"):
        directory = settings.SESSION_FILE_PATH or _tempdir()
        source = DjangoFileReader(
            directory, secret_key=secret, prefix=settings.SESSION_COOKIE_NAME, max_age=age
        )
    else:
        url = database_url("default")
        location = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
        source = DjangoDBReader(location, secret_key=secret, max_age=age)
    return LegacyCookie(
        settings.SESSION_COOKIE_NAME,
        source=source,
        path=settings.SESSION_COOKIE_PATH,
        domain=settings.SESSION_COOKIE_DOMAIN,
        max_age=age,
    )


def _tempdir() -> str:
    import tempfile

    return tempfile.gettempdir()  # where Django's file engine keeps sessions by default
