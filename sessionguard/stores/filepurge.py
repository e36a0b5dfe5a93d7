"""A `FileStore`'s maintenance: purging expired records and orphaned temp files, scanning
every record, and reporting what killed writers left.

Each walks the fan-out directories of a `FileLayout` and touches only files whose name
is a key that hashes to the directory it is in (anything else is an operator's, left
alone). Everything that removes a file does so under that key's stripe lock, so no write
is in progress and a record refreshed since the listing is seen live.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from ..errors import StoreUnavailableError
from . import fileowners, filerecord
from .base import PurgeProgress, StoredRecord, key_hash
from .filelayout import TMP_SUFFIX, FileLayout

__all__ = ["leftover_temp_files", "purge_batches", "scan"]

Clock = Callable[[], float]


def purge_batches(
    layout: FileLayout, limit: int, clock: Clock, batch_size: int
) -> Iterator[PurgeProgress]:
    """One step per fan-out directory, or per `batch_size` files (see `FileStore`)."""
    parents = list(layout.fan_out_dirs())
    for done, parent in enumerate(parents, 1):
        removed: list[str] = []
        examined, errors = 0, []
        try:
            names = layout.names(parent)
        except StoreUnavailableError as exc:
            names, errors = [], [str(exc)]
        for name in names:
            try:
                if _purge_one(layout, limit, clock, parent, name):
                    removed.append(name)
            except StoreUnavailableError as exc:
                errors.append(str(exc))
            examined += 1
            if examined % batch_size == 0 and examined < len(names):
                yield _progress(removed, done - 1, len(parents), errors)
                removed, errors = [], []
        if done == len(parents):
            # Last, the index entries a killed writer left (the records' own went above).
            try:
                fileowners.purge_index(layout)
            except StoreUnavailableError as exc:
                errors.append(str(exc))
        yield _progress(removed, done, len(parents), errors)


def _progress(removed: list[str], done: int, total: int, errors: list[str]) -> PurgeProgress:
    return PurgeProgress(len(removed), done, total, tuple(errors), tuple(removed))


def scan(layout: FileLayout, limit: int, clock: Clock) -> Iterator[StoredRecord]:
    """Every record file, expired ones too, read without locks (as `load` reads)."""
    for parent in layout.fan_out_dirs():
        for name in layout.names(parent):
            if name.startswith(".") or layout.owner(parent, name) is None:
                continue
            record = filerecord.read(layout, os.path.join(parent, name), name, limit)
            if record is not None:  # None: removed since the listing
                yield StoredRecord(name, record, record.expires_at <= clock())


def leftover_temp_files(layout: FileLayout) -> list[str]:
    """Keys whose temp file a killed writer left behind; changes nothing.

    Each temp file is checked under its key's stripe lock (never creating a lock file),
    so one whose write is in progress right now is not reported.
    """
    keys = []
    for parent in layout.fan_out_dirs():
        for name in layout.names(parent):
            if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
                continue
            key = name[1 : -len(TMP_SUFFIX)]
            owner = layout.owner(parent, key)
            if owner is None:
                continue
            with layout.stripe_lock(owner, create=False):
                if os.path.lexists(os.path.join(parent, name)):
                    keys.append(key)
    return keys


def _purge_one(layout: FileLayout, limit: int, clock: Clock, listed_in: str, name: str) -> bool:
    """Remove the file `name` if it is an expired record (true) or an orphaned temp file."""
    is_temp = name.startswith(".") and name.endswith(TMP_SUFFIX)
    key = name[1 : -len(TMP_SUFFIX)] if is_temp else name
    stripe = layout.owner(listed_in, key)
    if stripe is None:
        return False
    path = os.path.join(listed_in, key)
    # Under the key's lock no write is in progress, so its temp file is an orphan, and a
    # record refreshed or rewritten since the directory listing is seen as live.
    with layout.stripe_lock(stripe):
        if is_temp:
            with (
                layout.errors(f"remove the temp file of session {key_hash(key)}"),
                contextlib.suppress(FileNotFoundError),
            ):
                os.unlink(os.path.join(listed_in, name))
            return False
        # Only bytes that are intact say when they expire: a damaged or foreign file is
        # corrupt whatever its age, and stays for `purge --corrupt` to handle.
        record = filerecord.read(layout, path, key, limit)
        if record is None or record.expires_at > clock():
            return False
        with layout.errors(f"purge the record of session {key_hash(key)}"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
        fileowners.disown(layout, layout.locate(key)[0], key)
    return True
