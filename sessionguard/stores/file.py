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
ab/<key>                    the record; ab comes from a hash of the key (fan-out)
ab/.<key>.tmp               the temp file of a write in progress for <key>
ab/cd/<key>                 a record written before 0.2, two levels deep (read, moved up
                            to ab/ at its next write)
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
  leaves at most one temp file per key, which the next write of that key or
  `purge_expired` removes; the lock files are never unlinked, so no one can lose a lock
  they hold.
* Nothing on disk is trusted blindly (`sessionguard.stores.filesafety`): the directory,
  `.locks` and the fan-out directories must belong to the user the store runs as and be
  writable by no one else; no symbolic link inside the store is ever followed; only
  regular files of at most `max_record_size` bytes are read. Anything else at a record's
  name is a damaged record (`not_a_file`, `oversized`), never read, whose name (never
  what it points to) the corruption policy may remove.
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
import stat
import time
from collections.abc import Callable, Iterator

from ..errors import (
    ConfigurationError,
    CorruptReason,
    CorruptSessionError,
    StoreUnavailableError,
)
from ..verdicts import Verdicts
from . import cachedio, filesafety, frame
from .base import (
    ABSENT,
    BaseStore,
    PurgeProgress,
    Record,
    StoredRecord,
    Updater,
    key_hash,
    purge_in_one_go,
    validate_key,
)

__all__ = ["DEFAULT_DIRECTORY", "FileStore"]

#: Where the middlewares keep sessions when no store is given: `./sessions`.
DEFAULT_DIRECTORY = "sessions"
_LOCK_DIR = ".locks"
_TMP_SUFFIX = ".tmp"
_FAN_OUT_NAME = re.compile(r"[0-9a-f]{2}")


class FileStore(BaseStore):
    """Sessions as files under `directory`; safe across threads and processes on one machine.

    `durable=True` (the default) fsyncs the file and its directory on every write, so a
    saved session survives a power cut; `durable=False` skips both and survives process
    crashes only. The async methods run the same code in a bounded thread pool of
    `max_threads` threads.

    `directory` (and every missing level above it) is created with mode 0700. It may be
    a symbolic link the operator made, but it, and everything in it, must be owned by
    the user the store runs as and writable by no one else: `ConfigurationError` at
    construction, `StoreUnavailableError` for a fan-out directory met later, each saying
    how to fix it (`chmod 700 ...`, `chown ...`).

    `max_record_size` (1 MiB) bounds what is read for one session, header included: a
    larger file is a damaged record (`oversized`) and is never read, and a save that
    would write one raises `StoreUnavailableError` and keeps the previous record.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        durable: bool = True,
        create: bool = True,
        stripes: int = 64,
        max_threads: int = 8,
        max_record_size: int = 1 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_threads=max_threads)
        if not 1 <= stripes <= 256:
            raise ConfigurationError(f"stripes must be between 1 and 256, got {stripes!r}")
        if (
            not isinstance(max_record_size, int)
            or isinstance(max_record_size, bool)
            or max_record_size < frame.HEADER_SIZE
        ):
            raise ConfigurationError(
                f"max_record_size must be a number of bytes of at least {frame.HEADER_SIZE} "
                f"(a record's header), got {max_record_size!r}"
            )
        self.directory = os.path.abspath(os.fspath(directory))
        self.durable = durable
        self.max_record_size = max_record_size
        self._stripes = stripes
        self._clock = clock
        # Fan-out directories that passed `_check_fan_out`: one lstat each per process.
        self._trusted: set[str] = set()
        if not create and not os.path.isdir(self.directory):
            raise ConfigurationError(
                f"The session directory {self.directory!r} doesn't exist. Create it, "
                "or pass create=True to let FileStore create it."
            )
        filesafety.make_private_dirs(self.directory)
        # The directory itself is judged through a link the operator may have made; what
        # is inside it, never.
        filesafety.require_private(self.directory, os.stat(self.directory), "session directory")
        locks = os.path.join(self.directory, _LOCK_DIR)
        if not filesafety.make_private_dir(locks):
            filesafety.require_private(locks, os.lstat(locks), "lock directory")

    # -- paths -------------------------------------------------------------------------

    def _locate(self, key: str) -> tuple[str, str, int]:
        """Return (directory, file path, stripe) for a key."""
        return _locate(self.directory, self._stripes, key)

    def _place(self, key: str) -> tuple[str, str, int]:
        """`_locate`, after checking the fan-out directory if it exists."""
        located = _locate(self.directory, self._stripes, key)
        self._check_fan_out(located[0])
        return located

    def _check_fan_out(self, parent: str, *, create: bool = False) -> None:
        """Raise `StoreUnavailableError` unless `parent`, and the level above it when that
        is not the store itself (the two-level layout), are ours alone; `create` makes
        the missing ones."""
        if parent not in self._trusted:
            with self._errors(f"check directory {parent!r}"):
                above = os.path.dirname(parent)
                levels = (parent,) if above == self.directory else (above, parent)
                filesafety.check_levels(self.directory, levels, self._trusted, create=create)

    def _find(self, path: str, key: str) -> tuple[str, Record | None]:
        """The record of `key`, expired or not, and the path it is at: `path`, or where
        stores before 0.2 put it (two fan-out levels deep)."""
        record = self._read_any(path, key)
        if record is not None:
            return path, record
        old = _old_path(self.directory, key)
        self._check_fan_out(os.path.dirname(old))
        return old, self._read_any(old, key)

    def _find_live(self, path: str, key: str) -> tuple[str, Record | None]:
        found, record = self._find(path, key)
        if record is None or record.expires_at <= self._clock():
            return found, None
        return found, record

    def _drop_old(self, found: str, path: str, key: str) -> None:
        """After writing `path`, remove the copy at the pre-0.2 `found`, if that is where
        the record was: the new file is in place, so the old one is only a stale twin."""
        if found != path:
            with (
                self._errors(f"remove the old copy of session {key_hash(key)}"),
                contextlib.suppress(FileNotFoundError),
            ):
                os.unlink(found)

    @contextlib.contextmanager
    def _stripe_lock(self, stripe: int, *, create: bool = True) -> Iterator[None]:
        """Hold a stripe lock. `create=False` (readers that must change nothing) does not
        create a missing lock file: no one can be holding a lock that does not exist."""
        path = os.path.join(self.directory, _LOCK_DIR, f"{stripe:02x}")
        fd: int | None = None
        flags = os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        with self._errors(f"lock {path!r}"):
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
            with self._errors(f"lock {path!r}"):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @contextlib.contextmanager
    def _errors(self, what: str | Callable[[], str], *, replaced: bool = False) -> Iterator[None]:
        """Turn an `OSError` while doing `what` into `StoreUnavailableError`.

        `replaced=True` for the one step after the rename, where the new data is
        already in place and only its durability is in doubt.
        """
        try:
            yield
        except OSError as exc:
            doing = what() if callable(what) else what
            raise self._unavailable(doing, exc, replaced=replaced) from exc

    def _unavailable(
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

    # -- reading -----------------------------------------------------------------------

    def _read_any(self, path: str, key: str) -> Record | None:
        """The record of `key` at `path`, expired or not; `None` if there is no file.

        Only intact records have a finite deadline: a damaged record of ours comes back
        with `damage` set, and bytes that are not ours at all (an empty file, a pickle, a
        damaged 0.1 record) come back as they are for the codec to name; neither expires.
        Only a regular file of at most `max_record_size` bytes is read: anything else
        comes back damaged (`not_a_file`, `oversized`) with an empty payload.
        """
        # Not `self._errors`: this runs on every request, and the happy path should not
        # pay for a context manager or for naming the session in a message it never shows.
        try:
            try:
                fd = os.open(path, filesafety.READ_FLAGS)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno not in filesafety.NOT_OPENED:
                    raise
                try:  # a link or a socket: judged by lstat, which follows nothing
                    return _unread(os.lstat(path), CorruptReason.NOT_A_FILE, self.max_record_size)
                except FileNotFoundError:
                    return None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return _unread(st, CorruptReason.NOT_A_FILE, self.max_record_size)
                raw = filesafety.read_at_most(fd, st.st_size, self.max_record_size)
                if raw is None:
                    return _unread(os.fstat(fd), CorruptReason.OVERSIZED, self.max_record_size)
            finally:
                os.close(fd)
        except OSError as exc:
            doing = f"read the record of session {key_hash(key)}"
            raise self._unavailable(doing, exc) from exc
        return _record_of(raw, st.st_mtime)

    def load(self, key: str) -> Record | None:
        return self._find_live(self._place(key)[1], key)[1]

    async def aload(self, key: str) -> Record | None:
        # Reads are most of the traffic, and a hop to a worker thread costs far more than
        # a read the kernel answers from its caches: so the read is tried on the event
        # loop first, where it can never wait for the disk (see cachedio), and done in a
        # thread only when it would have to.
        try:
            return self._load_cached(key)
        except cachedio.NotCached:
            return await self._run(self.load, key)

    def _load_cached(self, key: str) -> Record | None:
        """`load` from the kernel's caches only; `NotCached` for anything it cannot
        answer so (a file or directory not cached, no record at the path, anything but
        a regular file of at most `max_record_size`): the blocking `load` handles those."""
        parent, path, _ = _locate(self.directory, self._stripes, key)
        if parent not in self._trusted:
            raise cachedio.NotCached  # judged once, by the blocking path
        try:
            fd = cachedio.open_cached(path, filesafety.READ_FLAGS)
        except OSError:
            raise cachedio.NotCached from None  # missing, a link, ...: the slow path
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_record_size:
                raise cachedio.NotCached
            raw = cachedio.read_cached(fd, st.st_size)
        except OSError as exc:  # an I/O error on an open file: not worth a second try
            doing = f"read the record of session {key_hash(key)}"
            raise self._unavailable(doing, exc) from exc
        finally:
            os.close(fd)
        record = _record_of(raw, st.st_mtime)
        return None if record.expires_at <= self._clock() else record

    # -- writing -----------------------------------------------------------------------

    def save(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        parent, path, stripe = self._place(key)
        with self._stripe_lock(stripe):
            found, current = self._find_live(path, key)
            if expected_version is not None:
                if (current.version if current else ABSENT) != expected_version:
                    return None
            version = self._write(parent, path, key, payload, expires_at)
            self._drop_old(found, path, key)
        return version

    def update(self, key: str, updater: Updater) -> int | None:
        # The stripe lock covers read, merge and rename: a few hundred microseconds,
        # never the request. Readers still take no lock.
        parent, path, stripe = self._place(key)
        with self._stripe_lock(stripe):
            found, current = self._find_live(path, key)
            write = updater(current)
            if write is None:
                return None
            if write.payload is None:
                with (
                    self._errors(f"delete the record of session {key_hash(key)}"),
                    contextlib.suppress(FileNotFoundError),
                ):
                    os.unlink(found)
                return ABSENT
            version = self._write(parent, path, key, write.payload, write.expires_at)
            self._drop_old(found, path, key)
        return version

    def _write(self, parent: str, path: str, key: str, payload: bytes, expires_at: float) -> int:
        """Replace the record at `path` atomically; return its version."""
        digest = frame.digest_of(payload)
        data = frame.pack(payload, expires_at, digest) + payload
        version = frame.version_of(digest)
        if len(data) > self.max_record_size:
            # Written, it would read back as `oversized`: a session lost without a word.
            raise StoreUnavailableError(
                f"FileStore will not save session {key_hash(key)}: its record would be "
                f"{len(data)} bytes, "
                f"more than max_record_size={self.max_record_size}; the previously saved "
                "session data was left as it was. Keep less in the session, or raise "
                "max_record_size."
            )
        tmp = os.path.join(parent, f".{key}{_TMP_SUFFIX}")
        self._check_fan_out(parent, create=True)
        step = "create the temp file of {}"
        try:
            # One handler for the three steps; its message (with the key's hash) is
            # built only when a step fails.
            with self._errors(lambda: step.format(f"session {key_hash(key)}")):
                fd = self._create_temp(parent, tmp)
                step = "write the temp file of {}"
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                step = "rename the temp file of {} over its record"
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
        _INTACT.put(data, Record(payload, version, expires_at))  # most likely read next
        return version

    def _create_temp(self, parent: str, tmp: str) -> int:
        # A new file every time (O_EXCL, O_NOFOLLOW). Whatever has the name already is a
        # killed writer's leftover (this key's lock is held: no writer is alive) or was
        # planted; unlinking it removes the name, never what a link points to.
        try:
            return os.open(tmp, filesafety.TEMP_FLAGS, 0o600)
        except FileExistsError:
            os.unlink(tmp)
        except FileNotFoundError:  # the fan-out directory was removed since it was checked
            self._trusted.difference_update((parent, os.path.dirname(parent)))
            self._check_fan_out(parent, create=True)
        return os.open(tmp, filesafety.TEMP_FLAGS, 0o600)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        _, path, stripe = self._place(key)
        with self._stripe_lock(stripe):
            found, current = self._find(path, key)
            if current is None:
                return False
            live = current.expires_at > self._clock()
            if expected_version is not None and not (live and current.version == expected_version):
                return False
            # A name that is not a file (a planted link or FIFO) is removed, not its target.
            with self._errors(f"delete the record of session {key_hash(key)}"):
                try:
                    os.unlink(found)
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
        parent, path, stripe = self._place(key)
        with self._stripe_lock(stripe):
            found, current = self._find(path, key)
            # Only an intact record has a finite deadline; damaged bytes are left as
            # they are for the corruption policy, never given a fresh header.
            if current is None or not self._clock() < current.expires_at < math.inf:
                return False
            if expected_version is not None and current.version != expected_version:
                return False
            self._write(parent, path, key, current.payload, expires_at)
            self._drop_old(found, path, key)
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
        reports the former. Something at a record's name that is not a regular file (a
        FIFO, a symbolic link) is yielded as a damaged record, never read or followed.
        `batch_size` is unused: files are read one at a time.
        """
        for parent in self._fan_out_dirs():
            for name in self._list(parent):
                if name.startswith(".") or self._owner(parent, name) is None:
                    continue
                record = self._read_any(os.path.join(parent, name), name)
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
                    if os.path.lexists(os.path.join(parent, name)):
                        keys.append(key)
        return keys

    def _list(self, parent: str) -> list[str]:
        # Every name but directories: a link or FIFO at a record's name is reported and
        # removable (its name only), never followed.
        with self._errors(f"list {parent!r}"):
            try:
                return [e.name for e in os.scandir(parent) if not e.is_dir(follow_symlinks=False)]
            except (FileNotFoundError, NotADirectoryError):
                return []

    def _owner(self, listed_in: str, key: str) -> int | None:
        """The stripe of `key` if a file of that key in `listed_in` is ours, else `None`."""
        try:
            parent, _, stripe = self._locate(key)
        except ValueError:
            return None  # not ours: leave unknown files alone
        # A valid name in a directory it does not hash to is not ours either.
        if listed_in in (parent, os.path.dirname(_old_path(self.directory, key))):
            return stripe
        return None

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
                with (
                    self._errors(f"remove the temp file of session {key_hash(key)}"),
                    contextlib.suppress(FileNotFoundError),
                ):
                    os.unlink(os.path.join(parent, name))
                return 0
            # Only bytes that are intact say when they expire: a damaged or foreign file
            # is corrupt whatever its age, and stays for `purge --corrupt` to handle.
            record = self._read_any(path, key)
            if record is None or record.expires_at > self._clock():
                return 0
            with self._errors(f"purge the record of session {key_hash(key)}"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    return 0
        return 1

    def _fan_out_dirs(self) -> Iterator[str]:
        # Each fan-out directory, and the second-level ones stores before 0.2 made in it.
        for top in self._fan_out_level(self.directory):
            yield top
            yield from self._fan_out_level(top)

    def _fan_out_level(self, path: str) -> list[str]:
        # Only real directories with two-hex-digit names: the directory may also hold
        # files and folders of the operator's (a quarantine, a README) that are none of
        # ours, and a symbolic link could lead a purge to delete files anywhere.
        with self._errors(f"list {path!r}"):
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                return []
        return sorted(
            e.path
            for e in entries
            if _FAN_OUT_NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
        )

    def __repr__(self) -> str:
        return f"FileStore({self.directory!r}, durable={self.durable!r})"


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
def _old_path(directory: str, key: str) -> str:
    """Where sessionguard before 0.2 kept the record of `key`: two fan-out levels deep."""
    digest = hashlib.blake2b(key.encode(), digest_size=3).digest()
    return os.path.join(directory, f"{digest[0]:02x}", f"{digest[1]:02x}", key)


def _version_of(raw: bytes) -> int:
    # What a file without an intact header is versioned by: 0.1 used this for every record.
    return frame.version_of(frame.digest_of(raw))


def _record_of(raw: bytes, mtime: float) -> Record:
    """The record a file's bytes hold (`mtime` is only the deadline of a 0.1 record)."""
    intact = _INTACT.get(raw)
    if intact is not None:
        return intact
    try:
        found = frame.read(raw)
    except CorruptSessionError as exc:
        return Record(raw, _version_of(raw), math.inf, damage=exc)
    if found is not None:
        record = Record(found.payload, found.version, found.expires_at)
        _INTACT.put(raw, record)
        return record
    if frame.is_intact_v1_record(raw):
        return Record(raw, _version_of(raw), mtime)
    return Record(raw, _version_of(raw), math.inf)


# A session's file is read on every request and rewritten rarely: the checks of bytes
# seen intact (read, or just written here) are kept; the verdict depends on the bytes
# alone. Damaged or foreign bytes are judged afresh each time, each with an exception of
# its own.
_INTACT: Verdicts[Record] = Verdicts(4 << 20)


def _unread(found: os.stat_result, reason: CorruptReason, limit: int) -> Record:
    """The damaged record for a name whose file was judged by its stat alone, never read."""
    if reason is CorruptReason.NOT_A_FILE:
        kind = filesafety.describe(found.st_mode)
        detail = f"the record's name is {kind}, not a regular file; nothing was read from it"
    else:
        detail = (
            f"the record file holds {found.st_size} bytes, more than max_record_size={limit}; "
            "nothing was read from it"
        )
    # No bytes to hash: the version names this very file, so a delete by version (the
    # corruption policy's, purge's) misses if the name was given to another file since.
    identity = f"{reason}:{found.st_dev}:{found.st_ino}:{found.st_size}:{found.st_mtime_ns}"
    damage = CorruptSessionError(reason, detail)
    return Record(b"", _version_of(identity.encode()), math.inf, damage=damage)


def _fsync_directory(path: str) -> None:
    fd = os.open(path, filesafety.DIR_FLAGS)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot fsync a directory; the rename itself already happened.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
