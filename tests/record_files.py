"""Record files built by hand from the documented layouts, never by the code under test.

`framed` is a record as `FileStore` writes it now (a 32-byte header holding the deadline,
then the payload; see `sessionguard/stores/frame.py`). `write_v1` writes one the way
sessionguard 0.1 did: the payload alone, its deadline only in the file's mtime.
`record_path` and `lock_path` say where a `FileStore` keeps a key's record and lock.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

from sessionguard.stores import FileStore


def framed(payload: bytes, expires_at: float) -> bytes:
    """The bytes of a current-format record file holding `payload` until `expires_at`."""
    digest = hashlib.blake2b(payload, digest_size=8).digest()
    head = struct.pack(">4sI8sd", b"SGF1", len(payload), digest, expires_at)
    return head + hashlib.blake2b(head, digest_size=8).digest() + payload


def payload_of(path: Path) -> bytes:
    """The payload in a current-format record file, read past its header by hand."""
    raw = path.read_bytes()
    assert raw[:4] == b"SGF1", raw[:32]
    assert struct.unpack(">I", raw[4:8])[0] == len(raw) - 32
    return raw[32:]


def deadline_of(path: Path) -> float:
    """The expiry deadline in a current-format record file's header."""
    raw = path.read_bytes()
    assert raw[:4] == b"SGF1", raw[:32]
    deadline: float = struct.unpack(">d", raw[16:24])[0]
    return deadline


def write_v1(path: Path, payload: bytes, expires_at: float) -> None:
    """Write `payload` as sessionguard 0.1's FileStore did: the bytes alone, mtime = deadline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    os.utime(path, (expires_at, expires_at))


def record_path(store: FileStore, key: str) -> Path:
    """Where `store` keeps the record of `key`."""
    return Path(store._locate(key)[1])


def lock_path(store: FileStore, key: str) -> Path:
    """The lock file `store` takes to write `key` (one of a fixed set, shared by keys)."""
    return Path(store.directory, ".locks", f"{store._locate(key)[2]:02x}")
