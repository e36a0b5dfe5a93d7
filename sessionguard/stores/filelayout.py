"""`FileLayout`: where a `FileStore` keeps each key's files, and whether it may touch them.

The directory tree (see `sessionguard.stores.file`): a record at `ab/<key>` (`ab` from a
hash of the key), its temp file at `ab/.<key>.tmp`, records of stores before 0.2 at
`ab/cd/<key>`, and a fixed set of stripe lock files in `.locks/`. The layout checks each
directory it enters once per process (ours alone, no links: `filesafety`), holds the
stripe locks, lists what maintenance walks, and turns any `OSError` on the way into a
`StoreUnavailableError` that says what failed and that the stored data was kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterator

from ..errors import ConfigurationError, StoreUnavailableError
from . import filesafety
from .base import validate_key

__all__ = ["TMP_SUFFIX", "FileLayout", "old_path"]

TMP_SUFFIX = ".tmp"
_LOCK_DIR = ".locks"
_FAN_OUT_NAME = re.compile(r"[0-9a-f]{2}")
_HASH_NAME = re.compile(r"[0-9a-f]{32}")


class FileLayout:
    """The paths, checks, locks and error messages of one FileStore directory."""

    def __init__(self, directory: str, *, stripes: int, create: bool) -> None:
        self.directory = directory
        self.stripes = stripes
        # Fan-out directories that passed `check_fan_out`: one lstat each per process.
        self._trusted: set[str] = set()
        if not create and not os.path.isdir(directory):
            raise ConfigurationError(
                f"The session directory {directory!r} doesn't exist. Create it, "
                "or pass create=True to let FileStore create it."
            )
        filesafety.make_private_dirs(directory)
        # The directory itself is judged through a link the operator may have made; what
        # is inside it, never.
        filesafety.require_private(directory, os.stat(directory), "session directory")
        locks = os.path.join(directory, _LOCK_DIR)
        if not filesafety.make_private_dir(locks):
            filesafety.require_private(locks, os.lstat(locks), "lock directory")

    # -- paths -------------------------------------------------------------------------

    def locate(self, key: str) -> tuple[str, str, int]:
        """(fan-out directory, record path, stripe) of a key; `ValueError` for a bad key."""
        return _locate(self.directory, self.stripes, key)

    def place(self, key: str) -> tuple[str, str, int]:
        """`locate`, after checking the fan-out directory if it exists."""
        located = _locate(self.directory, self.stripes, key)
        self.check_fan_out(located[0])
        return located

    def old_path(self, key: str) -> str:
        """Where a store before 0.2 kept the record of `key`, its directory checked."""
        path = old_path(self.directory, key)
        self.check_fan_out(os.path.dirname(path))
        return path

    def check_fan_out(self, parent: str, *, create: bool = False) -> None:
        """Raise `StoreUnavailableError` unless `parent`, and the level above it when that
        is not the store itself (the two-level layout), are ours alone; `create` makes
        the missing ones."""
        if parent not in self._trusted:
            with self.errors(f"check directory {parent!r}"):
                above = os.path.dirname(parent)
                levels = (parent,) if above == self.directory else (above, parent)
                filesafety.check_levels(self.directory, levels, self._trusted, create=create)

    def check_private(self, levels: tuple[str, ...], *, create: bool) -> None:
        """`check_fan_out` for other directories of the store (outermost first)."""
        with self.errors(f"check directory {levels[-1]!r}"):
            filesafety.check_levels(self.directory, levels, self._trusted, create=create)

    def is_trusted(self, parent: str) -> bool:
        return parent in self._trusted

    def recheck(self, parent: str) -> None:
        """`parent` was found missing since it was checked: check (and make) it again."""
        self._trusted.difference_update((parent, os.path.dirname(parent)))
        self.check_fan_out(parent, create=True)

    # -- locks and errors ----------------------------------------------------------------

    @contextlib.contextmanager
    def stripe_lock(self, stripe: int, *, create: bool = True) -> Iterator[None]:
        """Hold a stripe lock. `create=False` (readers that must change nothing) does not
        create a missing lock file: no one can be holding a lock that does not exist."""
        path = os.path.join(self.directory, _LOCK_DIR, f"{stripe:02x}")
        fd: int | None = None
        flags = os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        with self.errors(f"lock {path!r}"):
            try:
                fd = os.open(path, os.O_RDWR | flags, 0o600)
            except FileNotFoundError:
                if create:
                    raise
            except PermissionError:
                if create:
                    raise
                # An operator with read access only. (Read-write is tried first because
                # NFS emulates flock with write locks, which need a writable descriptor.)
                fd = os.open(path, os.O_RDONLY | flags)
            except OSError as exc:
                if exc.errno not in filesafety.NOT_OPENED:
                    raise
                raise StoreUnavailableError(
                    f"FileStore will not open {path!r}: a symbolic link or other non-file "
                    "is where its lock file should be, and it follows no link inside the "
                    "store. Remove it (the next write creates the lock file again); the "
                    "previously saved session data was left as it was."
                ) from exc
        if fd is None:
            yield
            return
        try:
            with self.errors(f"lock {path!r}"):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @contextlib.contextmanager
    def errors(self, what: str | Callable[[], str], *, replaced: bool = False) -> Iterator[None]:
        """Turn an `OSError` while doing `what` into `StoreUnavailableError`.

        `replaced=True` for the one step after the rename, where the new data is
        already in place and only its durability is in doubt.
        """
        try:
            yield
        except OSError as exc:
            doing = what() if callable(what) else what
            raise self.unavailable(doing, exc, replaced=replaced) from exc

    def unavailable(
        self, doing: str, exc: OSError, *, replaced: bool = False
    ) -> StoreUnavailableError:
        outcome = (
            "the new session data is in place but may not survive a power cut"
            if replaced
            else "the previously saved session data was left as it was"
        )
        return StoreUnavailableError(
            f"FileStore could not {doing}: {exc.strerror or exc}. Check free space, "
            f"permissions and health of {self.directory!r}; {outcome}."
        )

    # -- listing, for maintenance --------------------------------------------------------

    def fan_out_dirs(self) -> Iterator[str]:
        """Each fan-out directory, and the second-level ones stores before 0.2 made in it."""
        for top in self._fan_out_level(self.directory):
            yield top
            yield from self._fan_out_level(top)

    def names(self, parent: str) -> list[str]:
        """Every name in `parent` but directories: a link or FIFO at a record's name is
        reported and removable (its name only), never followed."""
        with self.errors(f"list {parent!r}"):
            try:
                return [e.name for e in os.scandir(parent) if not e.is_dir(follow_symlinks=False)]
            except (FileNotFoundError, NotADirectoryError):
                return []

    def owner(self, listed_in: str, key: str) -> int | None:
        """The stripe of `key` if a file of that key in `listed_in` is ours, else `None`."""
        try:
            parent, _, stripe = self.locate(key)
        except ValueError:
            return None  # not ours: leave unknown files alone
        # A valid name in a directory it does not hash to is not ours either.
        if listed_in in (parent, os.path.dirname(old_path(self.directory, key))):
            return stripe
        return None

    def subdirectories(self, path: str) -> list[str]:
        """The real directories (never links) in `path` named by a 32-digit hex hash."""
        return self._fan_out_level(path, _HASH_NAME)

    def _fan_out_level(self, path: str, names: re.Pattern[str] | None = None) -> list[str]:
        # Only real directories with two-hex-digit names: the directory may also hold
        # files and folders of the operator's (a quarantine, a README) that are none of
        # ours, and a symbolic link could lead a purge to delete files anywhere.
        with self.errors(f"list {path!r}"):
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                return []
        return sorted(
            e.path
            for e in entries
            if (names or _FAN_OUT_NAME).fullmatch(e.name) and e.is_dir(follow_symlinks=False)
        )


@functools.lru_cache(maxsize=4096)
def _locate(directory: str, stripes: int, key: str) -> tuple[str, str, int]:
    # Cached: every request of a session asks again, and the hash and joins cost more than
    # the file read they lead to. Invalid keys raise, and exceptions are not cached.
    validate_key(key)
    digest = hashlib.blake2b(key.encode(), digest_size=3).digest()
    # One level of 256 directories: a flood of new sessions costs one inode each, not the
    # two directories per record that a second level costs until its 65,536 exist.
    parent = os.path.join(directory, f"{digest[0]:02x}")
    return parent, os.path.join(parent, key), digest[2] % stripes


@functools.lru_cache(maxsize=4096)
def old_path(directory: str, key: str) -> str:
    """Where sessionguard before 0.2 kept the record of `key`: two fan-out levels deep."""
    digest = hashlib.blake2b(key.encode(), digest_size=3).digest()
    return os.path.join(directory, f"{digest[0]:02x}", f"{digest[1]:02x}", key)
