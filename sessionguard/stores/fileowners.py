"""Who owns each `FileStore` record, and each user's sessions: the per-user index on disk.

```
ab/.<key>.owner          the owner of the record ab/<key> (the user id, UTF-8)
.users/<h>/<key>         an empty file: <key> belongs to the user whose id hashes to <h>
```

`<h>` is a BLAKE2b-128 of the user id, so no user id appears in a file name. Every
change happens under the key's stripe lock, in an order that never leaves a session
missing from its owner's directory, even if the process is killed between two steps:

1. the new owner's entry is created (`claim`);
2. the `.owner` file is replaced (`claim`);
3. the record is written (by the caller);
4. the previous owner's entry is removed (`release`).

A kill between steps leaves at most an extra entry: `sessions_of` lists only entries
whose `.owner` file names that user, and `purge` removes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

from . import filesafety
from .base import KEEP, Owner, key_hash
from .filelayout import FileLayout

__all__ = ["claim", "disown", "owner_of", "purge_index", "release", "sessions_of"]

USERS_DIR = ".users"
_OWNER_SUFFIX = ".owner"
_MAX_OWNER_BYTES = 1 << 16


def owner_of(layout: FileLayout, parent: str, key: str) -> str | None:
    """The owner recorded for `key` in its fan-out directory `parent`."""
    path = _owner_path(parent, key)
    with layout.errors(f"read the owner of session {key_hash(key)}"):
        try:
            fd = os.open(path, filesafety.READ_FLAGS)
        except FileNotFoundError:
            return None
        try:
            raw = os.read(fd, _MAX_OWNER_BYTES)
        finally:
            os.close(fd)
    return raw.decode("utf-8", "surrogatepass")


def claim(layout: FileLayout, parent: str, key: str, owner: Owner, *, durable: bool) -> str | None:
    """Steps 1 and 2 for a write of `key` by `owner`; returns the previous owner for
    `release` (the same as `owner` when nothing changes). The stripe lock is held."""
    previous = owner_of(layout, parent, key)
    if owner is KEEP or owner == previous:
        return None if owner is KEEP else previous
    if owner is not None:
        entry = _entry(layout, owner, key, create=True)
        with layout.errors(f"index session {key_hash(key)}"):
            os.close(os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    path = _owner_path(parent, key)
    layout.check_fan_out(parent, create=True)  # a new session's directory may not exist yet
    with layout.errors(f"record the owner of session {key_hash(key)}"):
        if owner is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            _replace(path, owner.encode("utf-8", "surrogatepass"), durable=durable)
    return previous


def release(layout: FileLayout, key: str, previous: str | None, owner: Owner) -> None:
    """Step 4: drop `previous`'s entry for `key` now that `owner` holds it."""
    if previous is None or owner is KEEP or owner == previous:
        return
    entry = _entry(layout, previous, key, create=False)
    with (
        layout.errors(f"unindex session {key_hash(key)}"),
        contextlib.suppress(FileNotFoundError),
    ):
        os.unlink(entry)


def disown(layout: FileLayout, parent: str, key: str) -> None:
    """The record of `key` is gone: drop its owner and its entry (stripe lock held)."""
    previous = owner_of(layout, parent, key)
    with (
        layout.errors(f"forget the owner of session {key_hash(key)}"),
        contextlib.suppress(FileNotFoundError),
    ):
        os.unlink(_owner_path(parent, key))
    release(layout, key, previous, None)


def sessions_of(layout: FileLayout, user: str) -> list[str]:
    """The keys whose `.owner` file names `user` (extra entries a kill left are skipped)."""
    directory = _checked_user_dir(layout, user, create=False)
    keys = []
    for name in layout.names(directory):
        try:
            parent, path, _ = layout.locate(name)
        except ValueError:
            continue  # not an entry of ours
        if os.path.lexists(path) and owner_of(layout, parent, name) == user:
            keys.append(name)
    return keys


def purge_index(layout: FileLayout) -> None:
    """Remove the entries a kill left behind: those whose record is gone or whose
    `.owner` names someone else. Each is checked under its key's stripe lock."""
    root = os.path.join(layout.directory, USERS_DIR)
    layout.check_private((root,), create=False)
    for user_dir in layout.subdirectories(root):
        for name in layout.names(user_dir):
            try:
                parent, path, stripe = layout.locate(name)
            except ValueError:
                continue
            with layout.stripe_lock(stripe):
                exists, owner = os.path.lexists(path), owner_of(layout, parent, name)
                if not (exists and owner is not None and _user_dir(layout, owner) == user_dir):
                    with contextlib.suppress(FileNotFoundError), layout.errors("purge the index"):
                        os.unlink(os.path.join(user_dir, name))
                if not exists and owner is not None:
                    with contextlib.suppress(FileNotFoundError), layout.errors("purge the index"):
                        os.unlink(_owner_path(parent, name))


def _owner_path(parent: str, key: str) -> str:
    return os.path.join(parent, f".{key}{_OWNER_SUFFIX}")


def _user_dir(layout: FileLayout, user: str) -> str:
    digest = hashlib.blake2b(user.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return os.path.join(layout.directory, USERS_DIR, digest)


def _entry(layout: FileLayout, user: str, key: str, *, create: bool) -> str:
    return os.path.join(_checked_user_dir(layout, user, create=create), key)


def _checked_user_dir(layout: FileLayout, user: str, *, create: bool) -> str:
    """The user's directory, after checking it (and `.users`) are ours alone."""
    directory = _user_dir(layout, user)
    layout.check_private((os.path.join(layout.directory, USERS_DIR), directory), create=create)
    return directory


def _replace(path: str, data: bytes, *, durable: bool) -> None:
    tmp = f"{path}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a killed writer's (the stripe lock is held: no writer is alive)
    fd = os.open(tmp, filesafety.TEMP_FLAGS, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
