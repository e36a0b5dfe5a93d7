"""Django's `file` and `db` session backends, decoded with the project's `SECRET_KEY`.

Both store `SessionBase.encode()` output: `django.core.signing.dumps` of the session dict
(JSON, zlib-compressed when that is shorter) with the salt
`"django.contrib.sessions.SessionStore"`. The signature is checked, so a record signed
with another key is counted as `bad_signature` and never copied. Django itself is
imported only here, and only when a reader is created (`pip install django`).
"""

from __future__ import annotations

import binascii
import os
import re
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, StoreUnavailableError
from .base import (
    DEFAULT_MAX_AGE,
    LegacyReader,
    LegacyRecord,
    SkipRecord,
    Undecodable,
    as_session,
    existing_dir,
)

__all__ = ["DjangoDBReader", "DjangoFileReader"]

# SessionBase.key_salt is "django.contrib.sessions." + the class's __qualname__; the file,
# db and cached_db backends all call their class SessionStore.
_SALT = "django.contrib.sessions.SessionStore"
_KEY_RE = re.compile(r"[a-z0-9]{1,40}")  # VALID_KEY_CHARS; the db column is 40 wide


class _Decoder:
    """`SessionBase.decode` without Django settings: `signing.loads` with the session salt."""

    def __init__(self, secret_key: str | None) -> None:
        if not secret_key:
            raise ConfigurationError(
                "reading Django sessions needs the project's SECRET_KEY, which signed them "
                "(--django-secret-key / django_secret_key=...)"
            )
        try:
            from django.core import signing
        except ImportError as exc:
            raise ConfigurationError(
                "reading Django sessions needs Django's signing module: pip install django"
            ) from exc
        self._signing: Any = signing
        self._key = secret_key

    def decode(self, text: str) -> dict[str, Any]:
        signing = self._signing
        try:
            # fallback_keys=[]: otherwise Django reads SECRET_KEY_FALLBACKS from its settings.
            data = signing.loads(
                text,
                key=self._key,
                salt=_SALT,
                serializer=signing.JSONSerializer,
                fallback_keys=[],
            )
        except signing.BadSignature as exc:
            raise SkipRecord("bad_signature", f"{exc} (another SECRET_KEY, or tampered)") from exc
        except (ValueError, binascii.Error, zlib.error, UnicodeError) as exc:
            raise SkipRecord("undecodable", f"signed but not decodable: {exc}") from exc
        return as_session(data)


def _file_expiry(data: Mapping[str, Any], modified: float, max_age: int) -> float:
    """The file backend's `_expiry_date`: `_session_expiry`, else mtime + SESSION_COOKIE_AGE."""
    expiry = data.get("_session_expiry")
    if isinstance(expiry, int | float) and not isinstance(expiry, bool) and expiry:
        return modified + expiry  # set_expiry(seconds): seconds of inactivity
    if isinstance(expiry, str):
        try:
            return datetime.fromisoformat(expiry).timestamp()  # set_expiry(datetime)
        except ValueError:
            pass
    return modified + max_age


class DjangoFileReader(LegacyReader):
    """`django.contrib.sessions.backends.file`: `<SESSION_FILE_PATH>/<prefix><session key>`.

    `prefix` is Django's `SESSION_COOKIE_NAME`. The deadline is the session's
    `_session_expiry`, else the file's mtime + `max_age` (`SESSION_COOKIE_AGE`).
    """

    kind = "django-file"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        secret_key: str | None,
        prefix: str = "sessionid",
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_age=max_age, clock=clock)
        self.directory = existing_dir(directory, "SESSION_FILE_PATH")
        self.prefix = prefix
        self._decoder = _Decoder(secret_key)

    def scan(self) -> Iterator[LegacyRecord | Undecodable]:
        for name in sorted(os.listdir(self.directory)):
            key = name[len(self.prefix) :]
            # Django's temp files are <prefix><key>_out_<random>: not keys, so skipped.
            if name.startswith(self.prefix) and _KEY_RE.fullmatch(key):
                yield from self.scan_one(key, self.fetch, key)

    def fetch(self, cookie_value: str) -> LegacyRecord | None:
        if not _KEY_RE.fullmatch(cookie_value):
            return None
        try:
            with open(self.directory / f"{self.prefix}{cookie_value}", "rb") as file:
                raw = file.read()
                modified = os.fstat(file.fileno()).st_mtime
        except FileNotFoundError:
            return None
        if not raw:
            raise SkipRecord("empty", "the session file is empty (Django's placeholder)")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise SkipRecord("undecodable", "the session file is not ASCII text") from exc
        data = self._decoder.decode(text)
        return LegacyRecord(cookie_value, data, _file_expiry(data, modified, self.max_age))


class DjangoDBReader(LegacyReader):
    """`django.contrib.sessions.backends.db`: the `django_session` table, read-only.

    `database` is a SQLite file (opened read-only with the standard library) or any
    SQLAlchemy URL. The deadline is `expire_date`; a naive one is taken as UTC, which is
    what Django stores with `USE_TZ = True` (the default since Django 5.0).
    """

    kind = "django-db"

    def __init__(
        self,
        database: str | os.PathLike[str],
        *,
        secret_key: str | None,
        table: str = "django_session",
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_age=max_age, clock=clock)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ConfigurationError(f"table {table!r} is not a plain SQL table name")
        self._decoder = _Decoder(secret_key)
        self._select = f"SELECT session_key, session_data, expire_date FROM {table}"
        self._engine: Any = None
        self._uri = ""
        location = os.fspath(database)
        if "://" in location:
            try:
                import sqlalchemy
            except ImportError as exc:  # pragma: no cover - SQLAlchemy is in the test group
                raise ConfigurationError(
                    "reading a Django database by URL needs SQLAlchemy: "
                    "pip install 'sessionguard[sql]'"
                ) from exc
            self._sa: Any = sqlalchemy
            self._engine = sqlalchemy.create_engine(location)
        elif Path(location).is_file():
            # mode=ro: a mistyped path must not create an empty database, nor write anything.
            self._uri = Path(location).absolute().as_uri() + "?mode=ro"
        else:
            raise ConfigurationError(
                f"the Django database {location!r} does not exist: give the SQLite file "
                "or a SQLAlchemy URL such as postgresql+psycopg://user@host/db"
            )

    def scan(self) -> Iterator[LegacyRecord | Undecodable]:
        for key, text, expire_date in self._rows(f"{self._select} ORDER BY session_key", {}):
            yield from self.scan_one(str(key), self._record, key, text, expire_date)

    def fetch(self, cookie_value: str) -> LegacyRecord | None:
        if not _KEY_RE.fullmatch(cookie_value):
            return None
        rows = self._rows(f"{self._select} WHERE session_key = :key", {"key": cookie_value})
        return self._record(*rows[0]) if rows else None

    def _record(self, key: object, text: object, expire_date: object) -> LegacyRecord:
        if not isinstance(text, str):
            raise SkipRecord("undecodable", f"session_data is a {type(text).__name__}")
        return LegacyRecord(str(key), self._decoder.decode(text), _timestamp(expire_date))

    def _rows(self, sql: str, params: dict[str, str]) -> list[tuple[Any, ...]]:
        if self._engine is None:
            try:
                with sqlite3.connect(self._uri, uri=True) as connection:
                    return connection.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc
        try:
            with self._engine.connect() as connection:
                return [tuple(row) for row in connection.execute(self._sa.text(sql), params)]
        except self._sa.exc.SQLAlchemyError as exc:
            raise _unavailable(exc) from exc

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _unavailable(exc: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(f"could not read the Django session table: {exc}")


def _timestamp(value: object) -> float:
    """`expire_date` as a POSIX time; naive values are UTC (Django's `USE_TZ = True`)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise SkipRecord("undecodable", f"expire_date {value!r} is not a date") from exc
    if not isinstance(value, datetime):
        raise SkipRecord("undecodable", f"expire_date {value!r} is not a date")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
