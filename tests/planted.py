"""Things a hostile local user (or a stray script) plants in a session directory, made for
real: symbolic links, FIFOs, sockets, oversized files. Plus `within_time`, which runs a
call that could block on a planted FIFO (or read /dev/zero forever) in a daemon thread,
so that a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeVar

_T = TypeVar("_T")

#: Upper bound on a call that must not block; reached only when a test fails.
WAIT = 5.0
SECRET = b"root:$6$not-for-your-eyes:19000:0:99999:7:::\n" * 4

Kind = Literal["fifo", "socket", "link_to_secret", "dangling_link", "link_to_dev_zero"]
KINDS: tuple[Kind, ...] = (
    "fifo",
    "socket",
    "link_to_secret",
    "dangling_link",
    "link_to_dev_zero",
)


def within_time(call: Callable[[], _T]) -> _T:
    """`call()`, run in a daemon thread that must finish within `WAIT` seconds."""
    results: list[_T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), f"the call was still running after {WAIT} s"
    if errors:
        raise errors[0]
    return results[0]


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def secret_file(directory: Path) -> Path:
    """A file outside the store that only its owner may read, as /etc/shadow is."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "shadow"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def plant(kind: Kind, path: Path, outside: Path) -> None:
    """Put a `kind` at `path` (its directory must exist); links point into `outside`."""
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "socket":
        # AF_UNIX paths are short (108 bytes): bind by a name relative to the directory.
        cwd = os.getcwd()
        os.chdir(path.parent)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(path.name)  # the socket file stays after the close
        finally:
            os.chdir(cwd)
    elif kind == "link_to_secret":
        path.symlink_to(secret_file(outside))
    elif kind == "dangling_link":
        path.symlink_to(outside / "not-there-yet")
    else:
        path.symlink_to("/dev/zero")
