"""One record file of a `FileStore`: read it (blocking, or from the kernel's caches only)
and replace it atomically.

A file is judged by its bytes (`sessionguard.stores.frame`): an intact record has a
deadline; a damaged one of ours comes back with `Record.damage` set; bytes that are not
ours at all (an empty file, a pickle, a damaged 0.1 record) come back as they are for
the codec to name. Neither of the last two ever expires. Only a regular file of at most
`limit` bytes is read; anything else comes back damaged (`not_a_file`, `oversized`) with
an empty payload, judged by its stat alone.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat

from ..errors import CorruptReason, CorruptSessionError, StoreUnavailableError
from ..verdicts import Verdicts
from . import cachedio, filesafety, frame
from .base import Record, key_hash
from .filelayout import TMP_SUFFIX, FileLayout

__all__ = ["read", "read_cached", "write"]

# A session's file is read on every request and rewritten rarely: the checks of bytes
# seen intact (read, or just written here) are kept; the verdict depends on the bytes
# alone. Damaged or foreign bytes are judged afresh each time, each with an exception of
# its own.
_INTACT: Verdicts[Record] = Verdicts(4 << 20)


def read(layout: FileLayout, path: str, key: str, limit: int) -> Record | None:
    """The record of `key` at `path`, expired or not; `None` if there is no file."""
    # No `layout.errors` block: this runs on every request, and the happy path should not
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
                return _unread(os.lstat(path), CorruptReason.NOT_A_FILE, limit)
            except FileNotFoundError:
                return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return _unread(st, CorruptReason.NOT_A_FILE, limit)
            raw = filesafety.read_at_most(fd, st.st_size, limit)
            if raw is None:
                return _unread(os.fstat(fd), CorruptReason.OVERSIZED, limit)
        finally:
            os.close(fd)
    except OSError as exc:
        raise layout.unavailable(f"read the record of session {key_hash(key)}", exc) from exc
    return _record_of(raw, st.st_mtime)


def read_cached(layout: FileLayout, located: tuple[str, str], key: str, limit: int) -> Record:
    """`read` from the kernel's caches only, never waiting for a disk (`cachedio`).

    `NotCached` for anything it cannot answer so: a file or directory not cached, no
    file at the path, anything but a regular file of at most `limit` bytes, a directory
    not yet checked. The blocking `read` handles those. `located`: the record's directory
    and path.
    """
    parent, path = located
    if not layout.is_trusted(parent):
        raise cachedio.NotCached  # judged once, by the blocking path
    try:
        fd = cachedio.open_cached(path, filesafety.READ_FLAGS)
    except OSError:
        raise cachedio.NotCached from None  # missing, a link, ...: the slow path
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise cachedio.NotCached
        raw = cachedio.read_cached(fd, st.st_size)
    except OSError as exc:  # an I/O error on an open file: not worth a second try
        raise layout.unavailable(f"read the record of session {key_hash(key)}", exc) from exc
    finally:
        os.close(fd)
    return _record_of(raw, st.st_mtime)


def write(
    layout: FileLayout,
    located: tuple[str, str],
    key: str,
    payload: bytes,
    expires_at: float,
    *,
    durable: bool,
    limit: int,
) -> int:
    """Replace the record at `located` (its directory and path) atomically; return its
    version. The caller holds the key's stripe lock."""
    parent, path = located
    digest = frame.digest_of(payload)
    data = frame.pack(payload, expires_at, digest) + payload
    version = frame.version_of(digest)
    if len(data) > limit:
        # Written, it would read back as `oversized`: a session lost without a word.
        raise StoreUnavailableError(
            f"FileStore will not save session {key_hash(key)}: its record would be "
            f"{len(data)} bytes, more than max_record_size={limit}; the previously saved "
            "session data was left as it was. Keep less in the session, or raise "
            "max_record_size."
        )
    tmp = os.path.join(parent, f".{key}{TMP_SUFFIX}")
    layout.check_fan_out(parent, create=True)
    step = "create the temp file of {}"
    try:
        # One handler for the three steps; its message (with the key's hash) is
        # built only when a step fails.
        with layout.errors(lambda: step.format(f"session {key_hash(key)}")):
            fd = _create_temp(layout, parent, tmp)
            step = "write the temp file of {}"
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if durable:
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
    if durable:
        with layout.errors(f"sync directory {parent!r}", replaced=True):
            _fsync_directory(parent)
    _INTACT.put(data, Record(payload, version, expires_at))  # most likely read next
    return version


def _create_temp(layout: FileLayout, parent: str, tmp: str) -> int:
    # A new file every time (O_EXCL, O_NOFOLLOW). Whatever has the name already is a
    # killed writer's leftover (this key's lock is held: no writer is alive) or was
    # planted; unlinking it removes the name, never what a link points to.
    try:
        return os.open(tmp, filesafety.TEMP_FLAGS, 0o600)
    except FileExistsError:
        os.unlink(tmp)
    except FileNotFoundError:  # the fan-out directory was removed since it was checked
        layout.recheck(parent)
    return os.open(tmp, filesafety.TEMP_FLAGS, 0o600)


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


def _version_of(raw: bytes) -> int:
    # What a file without an intact header is versioned by: 0.1 used this for every record.
    return frame.version_of(frame.digest_of(raw))


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
