"""`sessionguard migrate`: copy the sessions of the backend you leave into a sessionguard store.

```python
report = run_migration("django-file", "./django_sessions", FileStore("./sessions"),
                       django_secret_key=SECRET_KEY)
print(report.summary())
```

Each live session is saved under `legacy_key(cookie_name, id)`, where the middleware's
`LegacyCookie(cookie_name)` adopts it on the user's next request (a Quixote session under
its own id, where `sessionguard.quixote.SessionGuardStore` finds it). `open_source` returns
the same reader as a read-only `LegacySource`, to adopt sessions straight from the old
store instead. Pickle-based stores are read only with `trust_pickle=True`; a record that
cannot be read is counted and skipped, never fatal.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .codec import Cipher, Envelope, encode
from .errors import ConfigurationError
from .hashedids import HashedIds
from .legacy import legacy_key
from .ops import key_hash
from .sources.base import DEFAULT_MAX_AGE, LegacyReader, Undecodable
from .sources.django import DjangoDBReader, DjangoFileReader
from .sources.pickled import BeakerFileReader, FlaskSessionReader, PickleDirReader
from .sources.quixote_dir import QuixoteDirReader
from .stores.base import SyncStore

__all__ = [
    "DEFAULT_COOKIE_NAMES",
    "DEFAULT_MAX_AGE",
    "SOURCE_KINDS",
    "MigrationReport",
    "open_source",
    "run_migration",
]

logger = logging.getLogger("sessionguard.migrate")

SOURCE_KINDS: tuple[str, ...] = (
    "django-file",
    "django-db",
    "flask-session",
    "beaker-file",
    "pickle-dir",
    "quixote-dir",
)
#: The cookie each old backend sets by default; migrated records are keyed by it.
DEFAULT_COOKIE_NAMES: dict[str, str] = {
    "django-file": "sessionid",
    "django-db": "sessionid",
    "flask-session": "session",
    "beaker-file": "beaker.session.id",
    "pickle-dir": "session",
    "quixote-dir": "QX_session",
}
_PICKLE_READERS: dict[str, Callable[..., LegacyReader]] = {
    "flask-session": FlaskSessionReader,
    "beaker-file": BeakerFileReader,
    "pickle-dir": PickleDirReader,
    "quixote-dir": QuixoteDirReader,
}


@dataclass
class MigrationReport:
    """What `run_migration` did; `by_reason` counts the undecodable records by reason."""

    copied: int = 0
    skipped_expired: int = 0
    undecodable: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    skipped_empty: int = 0

    def summary(self) -> str:
        """One line for people: `copied 3 session(s); skipped 1 expired, ...`."""
        text = (
            f"copied {self.copied} session(s); skipped {self.skipped_expired} expired, "
            f"{self.skipped_empty} empty, {self.undecodable} undecodable"
        )
        if self.by_reason:
            reasons = ", ".join(f"{name}: {n}" for name, n in sorted(self.by_reason.items()))
            text += f" ({reasons})"
        return text

    def _undecodable(self, kind: str, item: Undecodable) -> None:
        self.undecodable += 1
        self.by_reason[item.reason] = self.by_reason.get(item.reason, 0) + 1
        logger.info(
            "skipped %s session %s (%s): %s",
            kind,
            key_hash(item.legacy_id),
            item.reason,
            item.detail,
        )


def open_source(
    kind: str,
    source: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    django_secret_key: str | None = None,
    cookie_name: str | None = None,
    max_age: int = DEFAULT_MAX_AGE,
    clock: Callable[[], float] = time.time,
) -> LegacyReader:
    """A reader of the old store at `source`; it is also the read-only `LegacySource`.

    ```python
    old = open_source("django-file", "/var/lib/django/sessions", django_secret_key=KEY)
    app = SessionMiddleware(app, secret_key=..., legacy=LegacyCookie("sessionid", source=old))
    ```

    `source` is a directory, or for `django-db` a SQLite file or SQLAlchemy URL.
    `cookie_name` is the old cookie's name (Django prefixes its session files with it).
    `max_age` is the lifetime of sessions whose store keeps no deadline. Raises
    `ConfigurationError` for an unknown kind or missing store, a Django kind without
    `django_secret_key`, or a pickle kind without `trust_pickle`.
    """
    if kind == "django-file":
        prefix = cookie_name or DEFAULT_COOKIE_NAMES[kind]
        return DjangoFileReader(
            source, secret_key=django_secret_key, prefix=prefix, max_age=max_age, clock=clock
        )
    if kind == "django-db":
        return DjangoDBReader(source, secret_key=django_secret_key, max_age=max_age, clock=clock)
    if kind in _PICKLE_READERS:
        reader = _PICKLE_READERS[kind]
        return reader(source, trust_pickle=trust_pickle, max_age=max_age, clock=clock)
    raise ConfigurationError(
        f"unknown source kind {kind!r}; choose one of: {', '.join(SOURCE_KINDS)}"
    )


def run_migration(
    kind: str,
    source: str | os.PathLike[str],
    target: SyncStore,
    *,
    cookie_name: str | None = None,
    trust_pickle: bool = False,
    django_secret_key: str | None = None,
    sign_with: bytes | None = None,
    cipher: Cipher | None = None,
    hashed_ids: HashedIds | None = None,
    progress: Callable[[int], None] | None = None,
    max_age: int = DEFAULT_MAX_AGE,
    clock: Callable[[], float] = time.time,
) -> MigrationReport:
    """Copy every live session of the old store into `target`, where adoption finds it.

    Each is saved as a sessionguard envelope under `legacy_key(cookie_name, legacy_id)`
    with its old deadline, signed with `sign_with` (a key from `codec.record_keys`, so
    that apps with `unsigned_records="reject"` adopt it), and encrypted with `cipher` when
    the app encrypts its records, and under the keyed hash of that key with `hashed_ids`
    when the app hashes its ids; a second run overwrites them.
    Expired, empty and undecodable records are counted and skipped; only an unreadable source or an
    unavailable target (`StoreUnavailableError`) stops the run. `progress` is called
    after each record with the number examined so far. `cookie_name` defaults to the old
    backend's default (`DEFAULT_COOKIE_NAMES`) and must be the middleware's
    `LegacyCookie` name.

    `quixote-dir` sessions are copied under their own ids, for `sessionguard.quixote`'s
    `SessionGuardStore` (which refuses unsigned records, so `sign_with` is required).
    """
    if kind == "quixote-dir" and (sign_with is None or hashed_ids is not None):
        raise ConfigurationError(
            "quixote-dir sessions are copied for sessionguard.quixote.SessionGuardStore: give "
            "its secret_key (--secret-key) so the records are signed; it keeps no hashed ids"
        )
    reader = open_source(
        kind,
        source,
        trust_pickle=trust_pickle,
        django_secret_key=django_secret_key,
        cookie_name=cookie_name,
        max_age=max_age,
        clock=clock,
    )
    name = cookie_name or DEFAULT_COOKIE_NAMES[kind]
    report = MigrationReport()
    now = clock()
    try:
        for seen, item in enumerate(reader.scan(), 1):
            if isinstance(item, Undecodable):
                report._undecodable(kind, item)
            elif item.expires_at <= now:
                report.skipped_expired += 1
            elif not item.data:
                report.skipped_empty += 1
            else:
                try:
                    payload = encode(Envelope(item.data, now), key=sign_with, cipher=cipher)
                except TypeError as exc:  # a value msgpack cannot hold (a datetime, ...)
                    report._undecodable(kind, Undecodable(item.legacy_id, "unencodable", str(exc)))
                else:
                    key = item.legacy_id if reader.keeps_ids else legacy_key(name, item.legacy_id)
                    if hashed_ids is not None:
                        key = hashed_ids.of_session(key)
                    target.save(key, payload, expires_at=item.expires_at)
                    report.copied += 1
            if progress is not None:
                progress(seen)
    finally:
        reader.close()
    logger.info("migrated %s sessions: %s", kind, report.summary())
    return report
