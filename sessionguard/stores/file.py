"""`FileStore`: one file per session, replaced atomically, with no lock on the read path.

Why not lock and rewrite in place: a writer that opens the target with truncation and
is then killed, runs out of space or is read concurrently leaves an empty or half
written file (Django tickets #6984 and #8616), and locks taken after the truncating
open do not help. Here every write goes to a temp file beside the target, is flushed
(and fsynced when `durable=True`) and then `os.replace`d over it, so a reader opens
either the complete old file or the complete new one.

Layout, under `directory`:

```
.locks/00 .. .locks/3f      a fixed set of stripe lock files, created once, never unlinked
ab/cd/<key>                 the record; ab/cd come from a hash of the key (fan-out)
ab/cd/.<key>.tmp            the temp file of a write in progress for <key>
```

* The record file is a 32-byte header and the payload (`sessionguard.stores.frame`). The
  header holds the expiry deadline and checksums of itself and of the payload, so a file
  is judged by its bytes alone: a copy that loses the files' times (`cp -r`, a restore)
  keeps every session until its real deadline, and a file damaged or replaced by another
  program reads as corrupt (`Record.damage`, or bytes the codec rejects), never as
  expired. `touch` rewrites the file like any save (temp file, rename): a read-only
  request does that at most about once a minute per session.
* The version used for compare-and-swap is a hash of the payload, kept in the header:
  equal bytes mean equal state, and it cannot suffer from reused inode numbers.
* Records written by sessionguard 0.1 (the payload alone, the deadline in the mtime)
  still load, with their mtime as the deadline, until they are next written.
* Writers of one key serialise on that key's stripe lock (`flock`, released by the
  kernel if the holder dies) for the read-compare-write-rename step only. The temp file
  name is fixed per key and only written under that lock, so a writer killed mid-write
  leaves at most one temp file per key, which the next write or `purge_expired` reuses
  or removes; the lock files are never unlinked, so no one can lose a lock they hold.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import math
import os
import re
import time
from collections.abc import Callable, Iterator

from ..errors import ConfigurationError, CorruptSessionError, StoreUnavailableError
from . import frame
from .base import (
    ABSENT,
    PurgeProgress,
    Record,
    StoredRecord,
    ThreadedStore,
    Updater,
    purge_in_one_go,
    validate_key,
)

__all__ = ["DEFAULT_DIRECTORY", "FileStore"]

#: Where the middlewares keep sessions when no store is given: `./sessions`.
DEFAULT_DIRECTORY = "sessions"
_LOCK_DIR = ".locks"
_TMP_SUFFIX = ".tmp"
_FAN_OUT_NAME = re.compile(r"[0-9a-f]{2}")


class FileStore(ThreadedStore):
    """Sessions as files under `directory`; safe across threads and processes on one machine.

    `durable=True` (the default) fsyncs the file and its directory on every write, so a
    saved session survives a power cut; `durable=False` skips both and survives process
    crashes only. The async methods run the same code in a bounded thread pool of
    `max_threads` threads.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        durable: bool = True,
        create: bool = True,
        stripes: int = 64,
        max_threads: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_threads=max_threads)
        if not 1 <= stripes <= 256:
            raise ConfigurationError(f"stripes must be between 1 and 256, got {stripes!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.durable = durable
        self._stripes = stripes
        self._clock = clock
        if not create and not os.path.isdir(self.directory):
            raise ConfigurationError(
                f"The session directory {self.directory!r} doesn't exist. Create it, "
                "or pass create=True to let FileStore create it."
            )
        os.makedirs(os.path.join(self.directory, _LOCK_DIR), mode=0o700, exist_ok=True)

    # -- paths -------------------------------------------------------------------------

    def _locate(self, key: str) -> tuple[str, str, int]:
        """Return (directory, file path, stripe) for a key."""
        return _locate(self.directory, self._stripes, key)

    @contextlib.contextmanager
    def _stripe_lock(self, stripe: int, *, create: bool = True) -> Iterator[None]:
        """Hold a stripe lock. `create=False` (readers that must change nothing) does not
        create a missing lock file: no one can be holding a lock that does not exist."""
        path = os.path.join(self.directory, _LOCK_DIR, f"{stripe:02x}")
        fd: int | None = None
        with self._errors(f"lock {path!r}"):
            try:
                fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
            except FileNotFoundError:
                if create:
                    raise
            except PermissionError:
                if create:
                    raise
                # An operator with read access only. (Read-write is tried first because
                # NFS emulates flock with write locks, which need a writable descriptor.)
                fd = os.open(path, os.O_RDONLY)
        if fd is None:
            yield
            return
        try:
            with self._errors(f"lock {path!r}"):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @contextlib.contextmanager
    def _errors(self, what: str, *, replaced: bool = False) -> Iterator[None]:
        """Turn an `OSError` while doing `what` into `StoreUnavailableError`.

        `replaced=True` for the one step after the rename, where the new data is
        already in place and only its durability is in doubt.
        """
        try:
            yield
        except OSError as exc:
            outcome = (
                "the new session data is in place but may not survive a power cut"
                if replaced
                else "the previously saved session data was left as it was"
            )
            raise StoreUnavailableError(
                f"FileStore could not {what}: {exc.strerror or exc}. Check free space, "
                f"permissions and health of {self.directory!r}; {outcome}."
            ) from exc

    # -- reading -----------------------------------------------------------------------

    def _read(self, path: str) -> Record | None:
        record = self._read_any(path)
        if record is None or record.expires_at <= self._clock():
            return None
        return record

    def _read_any(self, path: str) -> Record | None:
        """The record at `path`, expired or not; `None` if there is no file.

        Only intact records have a finite deadline: a damaged record of ours comes back
        with `damage` set, and bytes that are not ours at all (an empty file, a pickle, a
        damaged 0.1 record) come back as they are for the codec to name; neither expires.
        """
        with self._errors(f"read {path!r}"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                stat = os.fstat(fd)
                # One read of the whole file (records are replaced, never grown in place);
                # the extra byte notices a file someone is appending to, and the loop
                # reads the rest of it.
                raw = os.read(fd, stat.st_size + 1)
                if len(raw) > stat.st_size:
                    chunks = [raw]
                    while chunk := os.read(fd, 1 << 16):
                        chunks.append(chunk)
                    raw = b"".join(chunks)
            finally:
                os.close(fd)
        try:
            found = frame.read(raw)
        except CorruptSessionError as exc:
            return Record(raw, _version_of(raw), math.inf, damage=exc)
        if found is not None:
            return Record(found.payload, found.version, found.expires_at)
        if frame.is_intact_v1_record(raw):
            return Record(raw, _version_of(raw), stat.st_mtime)
        return Record(raw, _version_of(raw), math.inf)

    def load(self, key: str) -> Record | None:
        return self._read(self._locate(key)[1])

    # -- writing -----------------------------------------------------------------------

    def save(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        parent, path, stripe = self._locate(key)
        with self._stripe_lock(stripe):
            if expected_version is not None:
                current = self._read(path)
                if (current.version if current else ABSENT) != expected_version:
                    return None
            return self._write(parent, path, key, payload, expires_at)

    def update(self, key: str, updater: Updater) -> int | None:
        # The stripe lock covers read, merge and rename: a few hundred microseconds,
        # never the request. Readers still take no lock.
        parent, path, stripe = self._locate(key)
        with self._stripe_lock(stripe):
            write = updater(self._read(path))
            if write is None:
                return None
            if write.payload is None:
                with self._errors(f"delete {path!r}"), contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                return ABSENT
            return self._write(parent, path, key, write.payload, write.expires_at)

    def _write(self, parent: str, path: str, key: str, payload: bytes, expires_at: float) -> int:
        """Replace the record at `path` atomically; return its version."""
        digest = frame.digest_of(payload)
        data = frame.pack(payload, expires_at, digest) + payload
        tmp = os.path.join(parent, f".{key}{_TMP_SUFFIX}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with self._errors(f"create {tmp!r}"):
            try:
                fd = os.open(tmp, flags, 0o600)
            except FileNotFoundError:  # first record in this fan-out directory
                os.makedirs(parent, mode=0o700, exist_ok=True)
                fd = os.open(tmp, flags, 0o600)
        try:
            with self._errors(f"write {tmp!r}"):
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            with self._errors(f"rename {tmp!r} to {path!r}"):
                os.replace(tmp, path)
        except BaseException:
            # Best effort: a temp file that cannot be removed now is an orphan that the
            # next write of this key or `purge_expired` removes; the original error matters.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if self.durable:
            with self._errors(f"sync directory {parent!r}", replaced=True):
                _fsync_directory(parent)
        return frame.version_of(digest)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        _, path, stripe = self._locate(key)
        with self._stripe_lock(stripe):
            current = self._read_any(path)
            if current is None:
                return False
            live = current.expires_at > self._clock()
            if expected_version is not None and not (live and current.version == expected_version):
                return False
            with self._errors(f"delete {path!r}"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    return False
        # An expired record is removed too, but it was not live: report `False`, as a
        # store that expires records by itself would.
        return live

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        # The deadline is in the file's bytes, so moving it is a rewrite (a 0.1 record
        # gets the header on the way). Under the stripe lock: "still live? then move the
        # deadline" must not interleave with a save, or with purge's "still expired?
        # then unlink", which would delete a session refreshed in between.
        parent, path, stripe = self._locate(key)
        with self._stripe_lock(stripe):
            current = self._read_any(path)
            # Only an intact record has a finite deadline; damaged bytes are left as
            # they are for the corruption policy, never given a fresh header.
            if current is None or not self._clock() < current.expires_at < math.inf:
                return False
            if expected_version is not None and current.version != expected_version:
                return False
            self._write(parent, path, key, current.payload, expires_at)
        return True

    # -- maintenance -------------------------------------------------------------------

    def purge_expired(self) -> int:
        """Remove expired records, and temp files orphaned by killed writers.

        A file that cannot be removed does not stop the run; `StoreUnavailableError` is
        raised at the end, naming it.
        """
        return purge_in_one_go(self)

    def purge_expired_batches(self, batch_size: int = 1000) -> Iterator[PurgeProgress]:
        """`purge_expired` in steps: one per fan-out directory, or per `batch_size` files.

        Progress is measured in fan-out directories (`total` is how many there are).
        """
        parents = list(self._fan_out_dirs())
        for done, parent in enumerate(parents, 1):
            removed, examined, errors = 0, 0, []
            try:
                names = self._list(parent)
            except StoreUnavailableError as exc:
                names, errors = [], [str(exc)]
            for name in names:
                try:
                    removed += self._purge_one(parent, name)
                except StoreUnavailableError as exc:
                    errors.append(str(exc))
                examined += 1
                if examined % batch_size == 0 and examined < len(names):
                    yield PurgeProgress(removed, done - 1, len(parents), tuple(errors))
                    removed, errors = 0, []
            yield PurgeProgress(removed, done, len(parents), tuple(errors))

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        """Every record file, expired ones too, read without locks (as `load` reads).

        Temp files and files that are not records are skipped; `leftover_temp_files`
        reports the former. `batch_size` is unused: files are read one at a time.
        """
        for parent in self._fan_out_dirs():
            for name in self._list(parent):
                if name.startswith(".") or self._owner(parent, name) is None:
                    continue
                record = self._read_any(os.path.join(parent, name))
                if record is not None:  # None: removed since the listing
                    yield StoredRecord(name, record, record.expires_at <= self._clock())

    def leftover_temp_files(self) -> list[str]:
        """Keys whose temp file a killed writer left behind; changes nothing.

        Each temp file is checked under its key's stripe lock (never creating a lock
        file), so one whose write is in progress right now is not reported.
        `purge_expired` removes the leftovers.
        """
        keys = []
        for parent in self._fan_out_dirs():
            for name in self._list(parent):
                if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):
                    continue
                key = name[1 : -len(_TMP_SUFFIX)]
                owner = self._owner(parent, key)
                if owner is None:
                    continue
                with self._stripe_lock(owner, create=False):
                    if os.path.exists(os.path.join(parent, name)):
                        keys.append(key)
        return keys

    def _list(self, parent: str) -> list[str]:
        with self._errors(f"list {parent!r}"):
            try:
                return [entry.name for entry in os.scandir(parent) if entry.is_file()]
            except (FileNotFoundError, NotADirectoryError):
                return []

    def _owner(self, listed_in: str, key: str) -> int | None:
        """The stripe of `key` if a file of that key in `listed_in` is ours, else `None`."""
        try:
            parent, _, stripe = self._locate(key)
        except ValueError:
            return None  # not ours: leave unknown files alone
        # A valid name in a directory it does not hash to is not ours either.
        return stripe if parent == listed_in else None

    def _purge_one(self, listed_in: str, name: str) -> int:
        is_temp = name.startswith(".") and name.endswith(_TMP_SUFFIX)
        key = name[1 : -len(_TMP_SUFFIX)] if is_temp else name
        stripe = self._owner(listed_in, key)
        if stripe is None:
            return 0
        parent, path = listed_in, os.path.join(listed_in, key)
        # Under the key's lock no write is in progress, so its temp file is an orphan,
        # and a record refreshed or rewritten since the directory listing is seen as live.
        with self._stripe_lock(stripe):
            if is_temp:
                orphan = os.path.join(parent, name)
                with self._errors(f"remove {orphan!r}"), contextlib.suppress(FileNotFoundError):
                    os.unlink(orphan)
                return 0
            # Only bytes that are intact say when they expire: a damaged or foreign file
            # is corrupt whatever its age, and stays for `purge --corrupt` to handle.
            record = self._read_any(path)
            if record is None or record.expires_at > self._clock():
                return 0
            with self._errors(f"purge {path!r}"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    return 0
        return 1

    def _fan_out_dirs(self) -> Iterator[str]:
        # Only two-hex-digit names at both levels: the directory may also hold files
        # and folders of the operator's (a quarantine, a README) that are none of ours.
        with self._errors(f"list {self.directory!r}"):
            tops = sorted(filter(_FAN_OUT_NAME.fullmatch, os.listdir(self.directory)))
        for top in tops:
            top_path = os.path.join(self.directory, top)
            with self._errors(f"list {top_path!r}"):
                try:
                    subs = sorted(filter(_FAN_OUT_NAME.fullmatch, os.listdir(top_path)))
                except (FileNotFoundError, NotADirectoryError):
                    continue
            for sub in subs:
                yield os.path.join(top_path, sub)

    def __repr__(self) -> str:
        return f"FileStore({self.directory!r}, durable={self.durable!r})"


@functools.lru_cache(maxsize=4096)
def _locate(directory: str, stripes: int, key: str) -> tuple[str, str, int]:
    # Cached: every request of a session asks again, and the hash and joins cost more than
    # the file read they lead to. Invalid keys raise, and exceptions are not cached.
    validate_key(key)
    digest = hashlib.blake2b(key.encode(), digest_size=3).digest()
    parent = os.path.join(directory, f"{digest[0]:02x}", f"{digest[1]:02x}")
    return parent, os.path.join(parent, key), digest[2] % stripes


def _version_of(raw: bytes) -> int:
    # What a file without an intact header is versioned by: 0.1 used this for every record.
    return frame.version_of(frame.digest_of(raw))


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot fsync a directory; the rename itself already happened.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
