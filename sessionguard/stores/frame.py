"""The bytes of a `FileStore` record: the payload behind a header that holds its deadline.

```
offset  size  field
0       4     magic b"SGF1"
4       4     payload length, big-endian
8       8     BLAKE2b-64 of the payload: the record's version, and its integrity check
16      8     expiry deadline, IEEE 754 double, big-endian Unix seconds
24      8     BLAKE2b-64 of bytes 0..24: the header's own check
32      n     payload (the codec's envelope; opaque here)
```

Why the deadline is in the bytes: sessionguard 0.1 kept it only in the file's mtime, so
a copy that did not preserve times (`cp -r`, a restore, a move to another disk) made
every session look expired, and a record damaged in place by another program got a
fresh mtime and looked expired instead of corrupt. Now a file is judged by its bytes
alone: `read` says whether they are a record this store wrote, intact, and when it
expires. Nothing the filesystem keeps beside the bytes (times, owner) is consulted,
except the mtime of a 0.1 record, which was its deadline by the rules it was written
under.

Rewriting the whole file to move the deadline (`touch`) is affordable: a read-only
request does it at most about once a minute per session.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

from ..errors import CorruptReason, CorruptSessionError

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "Frame",
    "digest_of",
    "is_intact_v1_record",
    "pack",
    "read",
    "version_of",
]

MAGIC = b"SGF1"
_HEADER = struct.Struct(">4sI8sd")  # magic, payload length, payload digest, deadline
_CHECK_SIZE = 8
HEADER_SIZE = _HEADER.size + _CHECK_SIZE

# sessionguard 0.1 wrote the codec's envelope as the whole file: b"SG", format version 1,
# flags, payload length, BLAKE2b-128 of those 8 bytes and the payload, payload. That
# format is frozen, so checking it here (rather than asking the codec, which the stores
# never see) cannot drift from what 0.1 wrote.
_V1_HEADER = struct.Struct(">2sBBI")
_V1_DIGEST_SIZE = 16


@dataclass(frozen=True, slots=True)
class Frame:
    """An intact record: its payload, version (`digest_of(payload)`) and deadline."""

    payload: bytes
    version: int
    expires_at: float


def digest_of(payload: bytes) -> bytes:
    """The payload's 8-byte digest, stored in the header and used as its version."""
    return hashlib.blake2b(payload, digest_size=8).digest()


def version_of(digest: bytes) -> int:
    # Never ABSENT (0): that value means "no record".
    return int.from_bytes(digest, "big") or 1


def pack(payload: bytes, expires_at: float, digest: bytes | None = None) -> bytes:
    """The header for `payload` expiring at `expires_at` (the payload follows it).

    Pass `digest` when it is known (moving a deadline) to skip hashing the payload again.
    """
    head = _HEADER.pack(MAGIC, len(payload), digest or digest_of(payload), expires_at)
    return head + hashlib.blake2b(head, digest_size=_CHECK_SIZE).digest()


def read(raw: bytes) -> Frame | None:
    """Check a file's bytes: a `Frame` if they are an intact record, `None` if they do
    not start with this format's magic (a 0.1 record, or not ours at all).

    Raises `CorruptSessionError` for a record of this format that is damaged: cut short
    anywhere, a flipped bit anywhere, bytes appended. A damaged record has no deadline
    that can be trusted, so it is corrupt, never expired.
    """
    if not raw.startswith(MAGIC):
        if raw and MAGIC.startswith(raw):
            raise CorruptSessionError(CorruptReason.TRUNCATED, f"only {len(raw)} byte(s) stored")
        return None
    if len(raw) < HEADER_SIZE:
        raise CorruptSessionError(
            CorruptReason.TRUNCATED, f"the file header needs {HEADER_SIZE} bytes, {len(raw)} stored"
        )
    head = raw[: _HEADER.size]
    if hashlib.blake2b(head, digest_size=_CHECK_SIZE).digest() != raw[_HEADER.size : HEADER_SIZE]:
        raise CorruptSessionError(
            CorruptReason.CHECKSUM_MISMATCH, "the file header's checksum does not match"
        )
    _, length, digest, expires_at = _HEADER.unpack(head)
    payload = raw[HEADER_SIZE:]
    if len(payload) != length:
        short = len(payload) < length
        reason = CorruptReason.TRUNCATED if short else CorruptReason.CHECKSUM_MISMATCH
        raise CorruptSessionError(
            reason, f"the file header declares {length} bytes of data, {len(payload)} stored"
        )
    if digest_of(payload) != digest:
        raise CorruptSessionError(
            CorruptReason.CHECKSUM_MISMATCH, "the data's checksum does not match"
        )
    if not math.isfinite(expires_at):
        # Only a writer that is not sessionguard can produce this (the checks above held).
        raise CorruptSessionError(CorruptReason.UNDECODABLE, f"the deadline is {expires_at!r}")
    return Frame(payload, version_of(digest), expires_at)


def is_intact_v1_record(raw: bytes) -> bool:
    """Whether `raw` is a complete, unaltered record as sessionguard 0.1 wrote it."""
    if len(raw) < _V1_HEADER.size + _V1_DIGEST_SIZE:
        return False
    magic, version, _, length = _V1_HEADER.unpack_from(raw)
    if magic != b"SG" or version != 1 or len(raw) != _V1_HEADER.size + _V1_DIGEST_SIZE + length:
        return False
    hasher = hashlib.blake2b(raw[: _V1_HEADER.size], digest_size=_V1_DIGEST_SIZE)
    hasher.update(raw[_V1_HEADER.size + _V1_DIGEST_SIZE :])
    return hasher.digest() == raw[_V1_HEADER.size : _V1_HEADER.size + _V1_DIGEST_SIZE]
