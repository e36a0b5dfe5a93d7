"""Reading a small file only when the kernel can answer from its caches, never waiting
for a disk: how `FileStore` serves reads on the event loop.

Two calls could wait for a disk on a read: the path lookup in `open` (a directory block
not in the dentry cache) and the `read` (a page not in the page cache). Linux answers
both without waiting when asked: `openat2` with `RESOLVE_CACHED` (Linux 5.12) fails
with `EAGAIN` unless every part of the path is in the lookup cache, and `preadv2` with
`RWF_NOWAIT` (Linux 4.14) fails with `EAGAIN`, or reads short, unless the data is in the
page cache. `fstat` on the open descriptor needs the inode, which the lookup has just
brought in. Anything else (another OS, an older kernel, a seccomp filter, an unusual
file) raises `NotCached`, and the caller does the ordinary blocking read in a worker
thread instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

__all__ = ["NotCached", "open_cached", "read_cached"]


class NotCached(Exception):
    """The kernel could not answer from its caches (or cannot be asked): read in a thread."""


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_SYS_OPENAT2 = 437  # the same number on every Linux architecture (the unified table)
_RESOLVE_CACHED = 0x20
_AT_FDCWD = -100
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0)


def _load_syscall() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux") or not _RWF_NOWAIT:
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):  # pragma: no cover - a libc without syscall()
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = (
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.POINTER(_OpenHow),
        ctypes.c_size_t,
    )
    return syscall


_syscall = _load_syscall()
# The kernel only reads the struct: one per set of flags, made once.
_hows: dict[int, _OpenHow] = {}
_HOW_SIZE = ctypes.sizeof(_OpenHow)
_available = _syscall is not None


def open_cached(path: str, flags: int) -> int:
    """`os.open(path, flags)`, or `NotCached` if the lookup would have to wait for a disk.

    Other errors are raised as `OSError`, as `os.open` raises them.
    """
    global _available
    if not _available:
        raise NotCached
    assert _syscall is not None
    how = _hows.get(flags)
    if how is None:
        how = _hows[flags] = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_CACHED)
    fd = int(_syscall(_SYS_OPENAT2, _AT_FDCWD, os.fsencode(path), how, _HOW_SIZE))
    if fd >= 0:
        return fd
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
        # No openat2 (kernel < 5.6), a seccomp filter, or no RESOLVE_CACHED (< 5.12):
        # never ask again.
        _available = False
        raise NotCached
    if error == errno.EAGAIN:  # not in the caches
        raise NotCached
    raise OSError(error, os.strerror(error), path)


def read_cached(fd: int, size: int) -> bytes:
    """The `size` bytes of the open regular file `fd`, or `NotCached` unless all of them
    (and nothing more: the file was not growing) are in the page cache."""
    buffer = bytearray(size + 1)
    try:
        got = os.preadv(fd, [buffer], 0, _RWF_NOWAIT)
    except BlockingIOError:
        raise NotCached from None
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:  # a file system without RWF_NOWAIT
            raise NotCached from None
        raise
    if got != size:
        raise NotCached  # partly cached, or changed since fstat: the thread reads it whole
    return bytes(memoryview(buffer)[:size])
