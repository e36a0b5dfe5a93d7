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
import math
import os
import time
from collections.abc import Callable, Iterator

from ..errors import ConfigurationError, StoreUnavailableError
from . import cachedio, fileowners, filepurge, filerecord, frame
from .base import (
    ABSENT,
    KEEP,
    BaseStore,
    Owner,
    PurgeProgress,
    Record,
    StoredRecord,
    Updater,
    key_hash,
    purge_in_one_go,
)
from .filelayout import FileLayout

__all__ = ["DEFAULT_DIRECTORY", "FileStore"]

#: Where the middlewares keep sessions when no store is given: `./sessions`.
DEFAULT_DIRECTORY = "sessions"


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
        self._clock = clock
        self._layout = FileLayout(self.directory, stripes=stripes, create=create)

    def _locate(self, key: str) -> tuple[str, str, int]:
        """Return (directory, file path, stripe) for a key."""
        return self._layout.locate(key)

    # -- reading -----------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        return self._find_live(self._layout.place(key)[1], key)[1]

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
        """`load` from the kernel's caches only, or `cachedio.NotCached`."""
        parent, path, _ = self._layout.locate(key)
        record = filerecord.read_cached(self._layout, (parent, path), key, self.max_record_size)
        return None if record.expires_at <= self._clock() else record

    def _find(self, path: str, key: str) -> tuple[str, Record | None]:
        """The record of `key`, expired or not, and the path it is at: `path`, or where
        stores before 0.2 put it (two fan-out levels deep)."""
        record = filerecord.read(self._layout, path, key, self.max_record_size)
        if record is not None:
            return path, record
        old = self._layout.old_path(key)
        return old, filerecord.read(self._layout, old, key, self.max_record_size)

    def _find_live(self, path: str, key: str) -> tuple[str, Record | None]:
        found, record = self._find(path, key)
        if record is None or record.expires_at <= self._clock():
            return found, None
        return found, record

    # -- writing -----------------------------------------------------------------------

    def save(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        parent, path, stripe = self._layout.place(key)
        with self._layout.stripe_lock(stripe):
            found, current = self._find_live(path, key)
            if expected_version is not None:
                if (current.version if current else ABSENT) != expected_version:
                    return None
            version = self._write_owned(parent, path, key, payload, expires_at, owner)
            self._drop_old(found, path, key)
        return version

    def update(self, key: str, updater: Updater) -> int | None:
        # The stripe lock covers read, merge and rename: a few hundred microseconds,
        # never the request. Readers still take no lock.
        parent, path, stripe = self._layout.place(key)
        with self._layout.stripe_lock(stripe):
            found, current = self._find_live(path, key)
            write = updater(current)
            if write is None:
                return None
            if write.payload is None:
                with (
                    self._layout.errors(f"delete the record of session {key_hash(key)}"),
                    contextlib.suppress(FileNotFoundError),
                ):
                    os.unlink(found)
                fileowners.disown(self._layout, parent, key)
                return ABSENT
            version = self._write_owned(
                parent, path, key, write.payload, write.expires_at, write.owner
            )
            self._drop_old(found, path, key)
        return version

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        _, path, stripe = self._layout.place(key)
        with self._layout.stripe_lock(stripe):
            found, current = self._find(path, key)
            if current is None:
                return False
            live = current.expires_at > self._clock()
            if expected_version is not None and not (live and current.version == expected_version):
                return False
            # A name that is not a file (a planted link or FIFO) is removed, not its target.
            with self._layout.errors(f"delete the record of session {key_hash(key)}"):
                try:
                    os.unlink(found)
                except FileNotFoundError:
                    return False
            fileowners.disown(self._layout, self._layout.locate(key)[0], key)
        # An expired record is removed too, but it was not live: report `False`, as a
        # store that expires records by itself would.
        return live

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        # The deadline is in the file's bytes, so moving it is a rewrite (a 0.1 record
        # gets the header on the way). Under the stripe lock: "still live? then move the
        # deadline" must not interleave with a save, or with purge's "still expired?
        # then unlink", which would delete a session refreshed in between.
        parent, path, stripe = self._layout.place(key)
        with self._layout.stripe_lock(stripe):
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

    def _write(self, parent: str, path: str, key: str, payload: bytes, expires_at: float) -> int:
        return filerecord.write(
            self._layout,
            (parent, path),
            key,
            payload,
            expires_at,
            durable=self.durable,
            limit=self.max_record_size,
        )

    def _write_owned(
        self, parent: str, path: str, key: str, payload: bytes, expires_at: float, owner: Owner
    ) -> int:
        """`_write`, with the owner changed around it (see `fileowners` for the order)."""
        previous = fileowners.claim(self._layout, parent, key, owner, durable=self.durable)
        try:
            version = self._write(parent, path, key, payload, expires_at)
        except BaseException:
            # The record was not replaced: it still belongs to `previous` (best effort; a
            # failure here leaves an entry that `sessions_of` skips and purge removes).
            if owner is not KEEP and owner != previous:
                with contextlib.suppress(StoreUnavailableError):
                    fileowners.claim(self._layout, parent, key, previous, durable=self.durable)
            raise
        fileowners.release(self._layout, key, previous, owner)
        return version

    def _drop_old(self, found: str, path: str, key: str) -> None:
        """After writing `path`, remove the copy at the pre-0.2 `found`, if that is where
        the record was: the new file is in place, so the old one is only a stale twin."""
        if found != path:
            with (
                self._layout.errors(f"remove the old copy of session {key_hash(key)}"),
                contextlib.suppress(FileNotFoundError),
            ):
                os.unlink(found)

    # -- maintenance (sessionguard.stores.filepurge) --------------------------------------

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
        return filepurge.purge_batches(self._layout, self.max_record_size, self._clock, batch_size)

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        """Every record file, expired ones too, read without locks (as `load` reads).

        Temp files and files that are not records are skipped; `leftover_temp_files`
        reports the former. Something at a record's name that is not a regular file (a
        FIFO, a symbolic link) is yielded as a damaged record, never read or followed.
        `batch_size` is unused: files are read one at a time.
        """
        return filepurge.scan(self._layout, self.max_record_size, self._clock)

    def leftover_temp_files(self) -> list[str]:
        """Keys whose temp file a killed writer left behind; changes nothing.

        Each temp file is checked under its key's stripe lock (never creating a lock
        file), so one whose write is in progress right now is not reported.
        `purge_expired` removes the leftovers.
        """
        return filepurge.leftover_temp_files(self._layout)

    # -- the per-user index (sessionguard.stores.fileowners) -----------------------------

    indexes_users = True

    def sessions_of(self, user: str) -> list[str]:
        return fileowners.sessions_of(self._layout, user)

    def owner_of(self, key: str) -> str | None:
        parent, path, _ = self._layout.place(key)
        return fileowners.owner_of(self._layout, parent, key) if os.path.lexists(path) else None

    def __repr__(self) -> str:
        return f"FileStore({self.directory!r}, durable={self.durable!r})"
