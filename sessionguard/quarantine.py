"""Copying a corrupt record aside before it leaves the store: the middleware's
`CorruptionPolicy(quarantine_dir=...)` and `sessionguard purge --quarantine` share it."""

from __future__ import annotations

import os

from .stores.filesafety import make_private_dirs

__all__ = ["copy_aside"]


def copy_aside(directory: str, file_name: str, payload: bytes) -> None:
    """Write `payload` to a new private file `directory/file_name`, durably, so that the
    record can then be deleted. A file of that name already there is an earlier copy of
    the same record and is left as it is. Raises `OSError`; nothing half-written stays."""
    make_private_dirs(directory)
    path = os.path.join(directory, file_name)
    try:
        # O_EXCL: never overwrite an earlier copy. O_NOFOLLOW: never write through a link
        # someone planted at the name.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)  # the evidence must outlive the delete that follows
    except OSError:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
