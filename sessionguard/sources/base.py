"""What every reader of an old session store shares: the records it yields and `LegacyReader`."""

from __future__ import annotations

import abc
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from ..errors import ConfigurationError, StoreUnavailableError
from ..ops import key_hash

__all__ = [
    "DEFAULT_MAX_AGE",
    "LegacyReader",
    "LegacyRecord",
    "PickleReader",
    "SkipRecord",
    "Undecodable",
    "as_session",
    "existing_dir",
    "unpickle",
]

logger = logging.getLogger("sessionguard.migrate")
security_logger = logging.getLogger("sessionguard.security")

#: Lifetime of a record whose store keeps no deadline (Django's SESSION_COOKIE_AGE default).
DEFAULT_MAX_AGE = 14 * 24 * 60 * 60


class LegacyRecord(NamedTuple):
    """One stored session of the old backend.

    `legacy_id` is the id the record is filed under: the cookie value, except for
    `flask-session`, whose files are named by a hash of it (see `LegacyReader.record_id`).
    """

    legacy_id: str
    data: dict[str, Any]
    expires_at: float


class Undecodable(NamedTuple):
    """A stored record that could not be read, and why (`reason` is a short label)."""

    legacy_id: str
    reason: str
    detail: str


class SkipRecord(Exception):
    """Raised inside a reader: this one record cannot be read (it becomes an `Undecodable`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class LegacyReader(abc.ABC):
    """Reads one old store; `load` makes it the read-only `LegacySource` of a `LegacyCookie`.

    Iterating yields every decodable record, expired ones included (compare
    `expires_at` with the clock); `scan` also yields an `Undecodable` for each record
    that could not be read. A reader never writes to the old store.
    """

    kind: ClassVar[str]
    #: `migrate` copies each record under its own id (where an integration that keeps the
    #: old ids looks it up, as `sessionguard.quixote` does), not under a `legacy_key`.
    keeps_ids: ClassVar[bool] = False

    def __init__(self, *, max_age: int, clock: Callable[[], float]) -> None:
        if max_age <= 0:
            raise ConfigurationError(f"max_age must be a positive number of seconds: {max_age!r}")
        self.max_age = max_age
        self.clock = clock

    @abc.abstractmethod
    def scan(self) -> Iterator[LegacyRecord | Undecodable]:
        """Every stored record, decoded or not, in a stable order."""

    @abc.abstractmethod
    def fetch(self, cookie_value: str) -> LegacyRecord | None:
        """The record behind a cookie value, expired or not, or `None`.

        Raises `SkipRecord` if it cannot be decoded and `OSError` if it cannot be read.
        """

    def record_id(self, cookie_value: str) -> str:
        """The `legacy_id` that `scan` reports for the session behind `cookie_value`."""
        return cookie_value

    def __iter__(self) -> Iterator[LegacyRecord]:
        return (item for item in self.scan() if isinstance(item, LegacyRecord))

    def load(self, legacy_id: str) -> dict[str, Any] | None:
        """The live session data for a cookie value, or `None` (missing, expired, unreadable).

        Raises `StoreUnavailableError` when the old store cannot be read at all.
        """
        try:
            record = self.fetch(legacy_id)
        except SkipRecord as skip:
            logger.info(
                "legacy %s session %s is unreadable (%s): %s",
                self.kind,
                key_hash(legacy_id),
                skip.reason,
                skip.detail,
            )
            return None
        except OSError as exc:
            raise StoreUnavailableError(
                f"could not read the old {self.kind} session store: {exc}"
            ) from exc
        if record is None or record.expires_at <= self.clock():
            return None
        return record.data

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Release what the reader opened (a database engine)."""

    def scan_one(
        self, legacy_id: str, read: Callable[..., LegacyRecord | None], *args: Any
    ) -> Iterator[LegacyRecord | Undecodable]:
        """`scan`'s step for one record, `read(*args)`: a file that vanished is no record."""
        try:
            record = read(*args)
        except SkipRecord as skip:
            yield Undecodable(legacy_id, skip.reason, skip.detail)
        except FileNotFoundError:
            return
        except OSError as exc:
            yield Undecodable(legacy_id, "unreadable", exc.strerror or str(exc))
        else:
            if record is not None:
                yield record


class PickleReader(LegacyReader):
    """A reader that must unpickle: refused unless the caller trusts the files."""

    def __init__(self, *, trust_pickle: bool, max_age: int, clock: Callable[[], float]) -> None:
        super().__init__(max_age=max_age, clock=clock)
        if not trust_pickle:
            raise ConfigurationError(
                f"{self.kind} sessions are pickles, and unpickling runs whatever code the file "
                "names: a planted or tampered session file would run code on this machine. "
                "Pass --trust-pickle (trust_pickle=True) only for files your own application "
                "wrote."
            )
        # Once per opened store, not per record.
        security_logger.warning(
            "reading %s sessions with pickle (trust_pickle): unpickling runs code named in "
            "the files, so only use it on files your own application wrote",
            self.kind,
        )

    @staticmethod
    def read_file(path: Path) -> tuple[bytes, float]:
        """The file's bytes and modification time."""
        with open(path, "rb") as file:
            return file.read(), os.fstat(file.fileno()).st_mtime


def unpickle(raw: bytes) -> Any:
    """`pickle.loads`, with every failure turned into a `SkipRecord` with its reason."""
    if not raw:
        raise SkipRecord("empty", "the file is empty")
    try:
        return pickle.loads(raw)  # only ever reached through a PickleReader (trust_pickle)
    except EOFError as exc:
        raise SkipRecord("truncated", "the pickle ends early") from exc
    except Exception as exc:  # unpickling can raise anything the stream asks for
        reason = "truncated" if "truncated" in str(exc) else "undecodable"
        raise SkipRecord(reason, f"unpickling failed: {type(exc).__name__}: {exc}") from exc


def as_session(value: object) -> dict[str, Any]:
    """`value` if it is a dict with str keys (a session), else a `SkipRecord`."""
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return value
    raise SkipRecord("not_a_session", f"holds a {type(value).__name__}, not a dict of str keys")


def existing_dir(directory: str | os.PathLike[str], what: str) -> Path:
    """`directory` as a `Path`, or a `ConfigurationError` naming the setting to look at."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigurationError(
            f"the old session directory {os.fspath(directory)!r} does not exist; give the "
            f"directory the old backend wrote to ({what})"
        )
    return path
