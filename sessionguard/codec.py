"""The stored format of a session: an integrity-checked envelope around msgpack (or JSON).

```
offset  size  field
0       2     magic b"SG"
2       1     format version (1)
3       1     flags: bit 0 set = JSON payload, clear = msgpack
4       4     payload length, big-endian
8       16    BLAKE2b-128 of bytes 0..8 and the payload
24      n     payload: [created_at, moved_to, data]
```

`decode` turns any byte string into an `Envelope` or a `CorruptSessionError` with a
reason; nothing else escapes it. The checksum covers the header too, so a flipped bit
anywhere is caught before the payload is parsed. Pickle is never called: a record that
looks like one is reported as `legacy_pickle` so operators can tell old data from damage.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from .errors import CorruptReason, CorruptSessionError

__all__ = ["Envelope", "Serializer", "decode", "encode"]

Serializer = Literal["msgpack", "json"]

MAGIC = b"SG"
FORMAT_VERSION = 1
_FLAG_JSON = 0x01
_HEADER = struct.Struct(">2sBBI")  # magic, version, flags, payload length
_DIGEST_SIZE = 16
# What `regenerate()` writes as a forward pointer: a session id (the store key charset).
_POINTER_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
HEADER_SIZE = _HEADER.size + _DIGEST_SIZE


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a stored record holds.

    `moved_to` is set only on the short-lived forward pointer that `regenerate()` leaves
    at the old id; such a record carries no data.
    """

    data: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    moved_to: str | None = None


def encode(envelope: Envelope, serializer: Serializer = "msgpack") -> bytes:
    """Serialize `envelope`.

    A value the serializer cannot represent raises `TypeError` naming its key.
    """
    body = [envelope.created_at, envelope.moved_to, envelope.data]
    try:
        if serializer == "json":
            payload = _json_dumps(body)
        else:
            payload = msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unencodable(envelope.data, serializer, exc) from exc
    flags = _FLAG_JSON if serializer == "json" else 0
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, flags, len(payload))
    return header + _digest(header, payload) + payload


def decode(raw: bytes) -> Envelope:
    """Check and decode stored bytes, or raise `CorruptSessionError` with the reason."""
    if not raw:
        raise CorruptSessionError(CorruptReason.EMPTY, "the record has no bytes")
    if _looks_like_pickle(raw):
        raise CorruptSessionError(
            CorruptReason.LEGACY_PICKLE,
            "the record is a pickle written by another session backend; it was not unpickled",
        )
    if not raw.startswith(MAGIC):
        if MAGIC.startswith(raw):
            raise CorruptSessionError(CorruptReason.TRUNCATED, f"only {len(raw)} byte(s) stored")
        raise CorruptSessionError(CorruptReason.BAD_MAGIC, f"starts with {raw[:8]!r}")
    if len(raw) < HEADER_SIZE:
        raise CorruptSessionError(
            CorruptReason.TRUNCATED, f"header needs {HEADER_SIZE} bytes, {len(raw)} stored"
        )
    _, version, flags, length = _HEADER.unpack_from(raw)
    payload = raw[HEADER_SIZE:]
    if len(payload) < length:
        raise CorruptSessionError(
            CorruptReason.TRUNCATED, f"payload declares {length} bytes, {len(payload)} stored"
        )
    if len(payload) > length:
        raise CorruptSessionError(
            CorruptReason.CHECKSUM_MISMATCH,
            f"payload declares {length} bytes, {len(payload)} stored",
        )
    header = raw[: _HEADER.size]
    if _digest(header, payload) != raw[_HEADER.size : HEADER_SIZE]:
        raise CorruptSessionError(CorruptReason.CHECKSUM_MISMATCH, "checksum does not match")
    if version != FORMAT_VERSION or flags & ~_FLAG_JSON:
        # The checksum held, so this was written on purpose by a newer sessionguard.
        raise CorruptSessionError(
            CorruptReason.BAD_MAGIC,
            f"format version {version} flags {flags:#x} are not supported by this release",
        )
    return _parse(payload, as_json=bool(flags & _FLAG_JSON))


def _parse(payload: bytes, *, as_json: bool) -> Envelope:
    try:
        if as_json:
            body = json.loads(payload)
        else:
            body = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # every parser error means the same thing: undecodable bytes
        raise CorruptSessionError(
            CorruptReason.UNDECODABLE, f"payload did not parse: {exc}"
        ) from exc
    if (
        isinstance(body, list)
        and len(body) == 3
        and _is_timestamp(body[0])
        # A pointer names a store key: anything else would reach the store unvalidated.
        and (body[1] is None or (isinstance(body[1], str) and _POINTER_RE.fullmatch(body[1])))
        and isinstance(body[2], dict)
        # map() keeps this loop in C: it runs on every request that has a session.
        and set(map(type, body[2])) <= {str}
    ):
        return Envelope(data=body[2], created_at=float(body[0]), moved_to=body[1])
    raise CorruptSessionError(CorruptReason.UNDECODABLE, "payload is not a session record")


def _is_timestamp(value: object) -> bool:
    # JSON integers are unbounded and JSON parses NaN/Infinity: float() of a huge int raises
    # OverflowError, and a non-finite created_at would disable the absolute timeout.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _digest(header: bytes, payload: bytes) -> bytes:
    hasher = hashlib.blake2b(header, digest_size=_DIGEST_SIZE)
    hasher.update(payload)
    return hasher.digest()


def _json_dumps(body: object) -> bytes:
    # allow_nan=False: NaN and Infinity are not JSON and would not survive other readers.
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _looks_like_pickle(raw: bytes) -> bool:
    # Protocols 2-5 open with PROTO; protocols 0 and 1 open with MARK/EMPTY_DICT and end with STOP.
    if len(raw) >= 2 and raw[0] == 0x80 and 2 <= raw[1] <= 5:
        return True
    return raw[:1] in (b"(", b"}") and raw.endswith(b".")


def _unencodable(data: Mapping[str, Any], serializer: Serializer, exc: Exception) -> TypeError:
    for key, value in data.items():
        # The key itself can be the culprit: msgpack cannot encode a lone surrogate.
        for part, what in ((key, "session key"), (value, "session value for key")):
            try:
                if serializer == "json":
                    _json_dumps(part)
                else:
                    msgpack.packb(part, use_bin_type=True)
            except (TypeError, ValueError, OverflowError):
                return TypeError(
                    f"{what} {key!r} of type {type(part).__name__} cannot be "
                    f"stored with {serializer}: {exc}. Store plain str/int/float/bool/None, "
                    "lists and dicts (and bytes with msgpack)."
                )
    return TypeError(f"session cannot be stored with {serializer}: {exc}")
