"""What `FileStore` trusts on disk, and how it makes the directories it creates private.

A session directory that another local user can write to is theirs as much as ours:
they can plant a symbolic link where a record, temp file or lock file will be opened,
or a FIFO that hangs a reader, and make the store read, overwrite or delete a file it
was never meant to touch. So the store only works in directories owned by the user it
runs as and writable by no one else, creates every directory it needs with mode 0700
whatever the umask, and opens nothing inside them through a symbolic link (the last
part is the caller's `O_NOFOLLOW`; this module judges directories).
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
from collections.abc import Iterable

from ..errors import ConfigurationError, StoreUnavailableError

__all__ = [
    "DIR_FLAGS",
    "NOT_OPENED",
    "PRIVATE_MODE",
    "READ_FLAGS",
    "TEMP_FLAGS",
    "check_levels",
    "describe",
    "distrust",
    "fix_for",
    "make_private_dir",
    "make_private_dirs",
    "read_at_most",
    "require_private",
]

#: The mode of every directory sessionguard creates: the owner's alone.
PRIVATE_MODE = 0o700

# O_NOFOLLOW on every open inside the store: a link planted there could point at any file
# the process may read or write. O_NONBLOCK: opening a FIFO planted at a record's name
# must not wait for a writer that never comes (the FIFO is then judged, never read).
#: How a record is opened for reading.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
#: How a temp file is created: always a new file, never through a link.
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
#: How a directory is opened to be fsynced or chmodded.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
#: What `open` says of a name it will not open as a file: a symbolic link under
#: O_NOFOLLOW (ELOOP; FreeBSD says EMLINK) or a socket (ENXIO).
NOT_OPENED = (errno.ELOOP, errno.EMLINK, errno.ENXIO)

_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


def make_private_dir(path: str) -> bool:
    """Create the directory `path` with mode 0700; return `False` if something is already there.

    The umask can only take bits away from `mkdir`'s mode (and an unusual one such as
    0o277 takes the owner's write bit too), so the mode is set again on the new directory,
    through a descriptor that cannot have followed a symbolic link.
    """
    try:
        os.mkdir(path, PRIVATE_MODE)
    except FileExistsError:
        return False
    fd = os.open(path, DIR_FLAGS)
    try:
        os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)
    return True


def make_private_dirs(path: str) -> None:
    """Create `path` and every missing directory above it, each with mode 0700.

    `os.makedirs(path, mode=0o700)` would not do: since Python 3.7 its `mode` applies to
    the last level only, and the levels above get 0o777 minus the umask.
    """
    missing = []
    level = os.path.abspath(path)
    while not os.path.isdir(level):  # follows links: an operator's symlinked path is fine
        missing.append(level)
        parent = os.path.dirname(level)
        if parent == level:
            break
        level = parent
    for level in reversed(missing):
        make_private_dir(level)


def distrust(st: os.stat_result) -> str | None:
    """What is wrong with a directory whose (l)stat is `st`, or `None` if it is ours alone."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, but sessionguard runs as uid {os.geteuid()}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def fix_for(path: str, st: os.stat_result, *, store: str | None = None) -> str:
    """How to make the directory at `path` (with (l)stat `st`) trustworthy, for a message.

    For a directory inside the store, pass the `store` directory: the fix then covers the
    whole tree at once (a store made under a umask such as 002 has many such directories).
    """
    if stat.S_ISLNK(st.st_mode):
        return f"remove the link (`rm {shlex.quote(path)}`); FileStore creates the directory"
    if not stat.S_ISDIR(st.st_mode):
        return "move it out of the way; FileStore creates the directory it needs there"
    # A link the operator made to the directory: chown -R and chmod act on its target.
    quoted = shlex.quote(os.path.realpath(store or path))
    if st.st_uid != os.geteuid():
        return (
            f"run the application as uid {st.st_uid}, or give the directory to uid "
            f"{os.geteuid()} (`chown -R {os.geteuid()} {quoted}`)"
        )
    if store is not None:
        return f"run `chmod -R go-w {quoted}`"
    if st.st_mode & stat.S_ISVTX:  # a shared directory such as /tmp: never make it private
        inside = shlex.quote(os.path.join(path, "sessions"))
        return f"give FileStore a directory of its own, such as {inside} (it is created 0700)"
    return f"run `chmod 700 {quoted}`"


def require_private(path: str, st: os.stat_result, what: str) -> None:
    """Raise `ConfigurationError` unless the directory `path` (stat `st`) is ours alone."""
    problem = distrust(st)
    if problem is not None:
        raise ConfigurationError(
            f"The {what} {path!r} {problem}. Another local user could plant links or files "
            "in it that make FileStore read, overwrite or delete files elsewhere. To fix it, "
            f"{fix_for(path, st)}."
        )


def check_levels(store: str, levels: Iterable[str], trusted: set[str], *, create: bool) -> None:
    """Check the fan-out directories `levels` of `store`, outermost first, adding each that
    passes to `trusted` (checked once per store: the hot path then costs a set lookup).

    With `create`, a missing level is created (mode 0700); without, the check stops at
    the first missing level, which holds nothing to read. Raises `StoreUnavailableError`
    for a level that is not ours alone, `OSError` when the check itself fails.
    """
    for level in levels:
        if level in trusted:
            continue
        if create and make_private_dir(level):
            trusted.add(level)
            continue
        try:
            found = os.lstat(level)
        except FileNotFoundError:
            return
        problem = distrust(found)
        if problem is not None:
            raise StoreUnavailableError(
                f"FileStore will not use {level!r}: it {problem}, so it may hold files "
                f"that are not the store's. To fix it, {fix_for(level, found, store=store)}."
            )
        trusted.add(level)


def describe(mode: int) -> str:
    """What kind of thing a name with this `st_mode` is, for a message: "a named pipe (FIFO)"."""
    return _KINDS.get(stat.S_IFMT(mode), "of an unexpected kind")


def read_at_most(fd: int, size: int, limit: int) -> bytes | None:
    """The bytes of the regular file `fd` (`size` when opened); `None` if over `limit`."""
    if size > limit:
        return None
    # One read of the whole file (records are replaced, never grown in place); the extra
    # byte notices a file someone is appending to, and the loop reads the rest of it.
    raw = os.read(fd, size + 1)
    if len(raw) <= size:
        return raw
    chunks, total = [raw], len(raw)
    while total <= limit and (chunk := os.read(fd, min(1 << 16, limit + 1 - total))):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks) if total <= limit else None
