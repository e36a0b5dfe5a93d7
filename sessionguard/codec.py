"""The stored format of a session: an integrity-checked, signed envelope around msgpack or JSON.

```
offset  size  field
0       2     magic b"SG"
2       1     format version: 2 signed (1: unsigned, as sessionguard 0.1 wrote)
3       1     flags: bit 0 set = JSON payload, clear = msgpack; bit 1 set = encrypted
              (the payload is a `Cipher`'s output, the header its associated data)
4       4     payload length, big-endian
8       16    BLAKE2b-128 of everything else (header, signature, payload): integrity
24      16    version 2 only: keyed BLAKE2b-128 of bytes 0..8 and the payload: authenticity
24/40   n     payload: [created_at, moved_to, data]
```

`decode` turns any byte string into an `Envelope` or a `CorruptSessionError` with a
reason; nothing else escapes it. The checksum covers the header too, so a flipped bit
anywhere is caught before the payload is parsed. Pickle is never called: a record that
looks like one is reported as `legacy_pickle` so operators can tell old data from damage.

The signature is a MAC with a key derived from the middleware's secret, so that write
access to the store alone cannot forge a session (say, `role=admin`). It is separate from
the checksum so that tools without the secret (`sessionguard scan`) still tell damage
from forgery: damage fails the checksum, a forgery only the signature. Keyed BLAKE2b
costs what the checksum costs.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import hmac
import json
import marshal
import math
import re
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgpack

from . import values
from .errors import CorruptReason, CorruptSessionError
from .verdicts import Verdicts

__all__ = [
    "Cipher",
    "Envelope",
    "KeyedCodec",
    "Serializer",
    "decode",
    "encode",
    "record_keys",
]

Serializer = Literal["msgpack", "json"]

MAGIC = b"SG"
FORMAT_VERSION = 2  # signed
UNSIGNED_VERSION = 1
_FLAG_JSON = 0x01
_FLAG_ENCRYPTED = 0x02
_KNOWN_FLAGS = _FLAG_JSON | _FLAG_ENCRYPTED
_HEADER = struct.Struct(">2sBBI")  # magic, version, flags, payload length
_DIGEST_SIZE = 16
# What `regenerate()` writes as a forward pointer: a session id (the store key charset).
_POINTER_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
HEADER_SIZE = _HEADER.size + _DIGEST_SIZE  # an unsigned record's; a signed one adds a MAC
_KEY_PURPOSE = b"sessionguard.record.v2"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a stored record holds.

    `moved_to` is set only on the short-lived forward pointer that `regenerate()` leaves
    at the old id; such a record carries no data.
    """

    data: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    moved_to: str | None = None


class Cipher(Protocol):
    """Encrypts payloads at rest (`sessionguard.cipher.RecordCipher`)."""

    #: How many bytes longer a ciphertext is than its plaintext.
    overhead: int

    def encrypt(self, plaintext: bytes, associated: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, associated: bytes) -> bytes: ...


def encode(
    envelope: Envelope,
    serializer: Serializer = "msgpack",
    *,
    key: bytes | None = None,
    cipher: Cipher | None = None,
) -> bytes:
    """Serialize `envelope`, signed with `key` (see `record_keys`) or, without one, unsigned,
    and with a `cipher`, encrypted.

    A value the serializer cannot represent raises `TypeError` naming its key.
    """
    body = [envelope.created_at, envelope.moved_to, envelope.data]
    try:
        if serializer == "json":
            payload = _json_dumps(values.to_json(body))
        else:
            payload = msgpack.packb(
                body, use_bin_type=True, strict_types=True, default=values.msgpack_default
            )
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unencodable(envelope.data, serializer, exc) from exc
    flags = _FLAG_JSON if serializer == "json" else 0
    version = UNSIGNED_VERSION if key is None else FORMAT_VERSION
    if cipher is not None:
        flags |= _FLAG_ENCRYPTED
        # The header is the ciphertext's associated data, so it must hold its length first.
        associated = _HEADER.pack(MAGIC, version, flags, cipher.overhead + len(payload))
        payload = cipher.encrypt(payload, associated)
    header = _HEADER.pack(MAGIC, version, flags, len(payload))
    mac = b"" if key is None else _digest(header, payload, key)
    return header + _digest(header + mac, payload) + mac + payload


def record_keys(secrets: Sequence[bytes]) -> list[bytes]:
    """The signing keys for records, one per secret (newest first), each bound to this use
    so that a secret shared with other HMAC uses cannot produce record signatures."""
    return [hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest() for secret in secrets]


def decode(
    raw: bytes,
    *,
    keys: Sequence[bytes] | None = None,
    accept_unsigned: bool = True,
    cipher: Cipher | None = None,
) -> Envelope:
    """Check and decode stored bytes, or raise `CorruptSessionError` with the reason.

    With `keys`, a signed record must carry the signature of one of them
    (`bad_signature` otherwise), and an unsigned one is refused (`unsigned`) unless
    `accept_unsigned`. Without `keys` (a tool that has no secret), only integrity is
    checked. An encrypted record needs the `cipher` that has its key (`unknown_key`
    otherwise).
    """
    header, mac, payload, flags = _intact(raw)
    if keys is not None:
        _check_signature(mac, header, payload, keys, accept_unsigned)
    if flags & _FLAG_ENCRYPTED:
        if cipher is None:
            raise CorruptSessionError(
                CorruptReason.UNKNOWN_KEY,
                "the record is encrypted, and no cipher was given to read it",
            )
        payload = cipher.decrypt(payload, header)
    return _parse(payload, as_json=bool(flags & _FLAG_JSON))


def _intact(raw: bytes) -> tuple[bytes, bytes, bytes, int]:
    """The header, signature, payload and flags of an envelope whose shape and checksum
    hold; `CorruptSessionError` naming what is wrong otherwise."""
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
    header_size = HEADER_SIZE + (_DIGEST_SIZE if version == FORMAT_VERSION else 0)
    if len(raw) < header_size:
        raise CorruptSessionError(
            CorruptReason.TRUNCATED, f"header needs {header_size} bytes, {len(raw)} stored"
        )
    payload = raw[header_size:]
    if len(payload) != length:
        short = len(payload) < length
        raise CorruptSessionError(
            CorruptReason.TRUNCATED if short else CorruptReason.CHECKSUM_MISMATCH,
            f"payload declares {length} bytes, {len(payload)} stored",
        )
    header, mac = raw[: _HEADER.size], raw[HEADER_SIZE:header_size]
    if _digest(header + mac, payload) != raw[_HEADER.size : HEADER_SIZE]:
        raise CorruptSessionError(CorruptReason.CHECKSUM_MISMATCH, "checksum does not match")
    if version not in (FORMAT_VERSION, UNSIGNED_VERSION) or flags & ~_KNOWN_FLAGS:
        # The checksum held, so this was written on purpose by a newer sessionguard.
        raise CorruptSessionError(
            CorruptReason.BAD_MAGIC,
            f"format version {version} flags {flags:#x} are not supported by this release",
        )
    return header, mac, payload, flags


class KeyedCodec:
    """`encode` and `decode` with one middleware's keys, for the request path: bytes it
    has checked or written once are not checked again.

    A session's record is read on every request and changes rarely, so the checksum, the
    signature and the shape of the same bytes were verified over and over. Bytes equal
    to ones already verified decode to an equal envelope, so the verdict is kept (see
    `Verdicts`, bounded by `budget` bytes), as is that of bytes this codec has just
    encoded. The data is never shared: each `decode` returns a dict of its own, copied
    from the kept one when every value is immutable, through `marshal` when it holds
    nested builtins (a list or dict could be changed in place by the request that gets
    it), parsed again otherwise. Corrupt bytes are never kept: they raise every time,
    each time with an exception of its own.
    """

    def __init__(
        self,
        keys: Sequence[bytes],
        *,
        serializer: Serializer = "msgpack",
        accept_unsigned: bool = True,
        cipher: Cipher | None = None,
        budget: int = 4 << 20,
    ) -> None:
        self._keys = keys
        self._serializer = serializer
        self._accept_unsigned = accept_unsigned
        self._cipher = cipher
        self._verdicts: Verdicts[_Checked] = Verdicts(budget)

    def encode(self, envelope: Envelope) -> bytes:
        """`encode`, signed with the newest key. The next request of the session, in this
        process, most likely reads these very bytes: decoding them then costs a copy (for
        msgpack envelopes of values it gives back exactly as they went in; not a zoned
        `datetime`, say)."""
        raw = encode(envelope, self._serializer, key=self._keys[0], cipher=self._cipher)
        if (
            self._serializer == "msgpack"
            and len(raw) <= self._verdicts.largest
            and math.isfinite(envelope.created_at)
            and set(map(type, envelope.data)) <= {str}
        ):
            self._keep(raw, _Checked.of(envelope, raw, _EXACT, copy=True))
        return raw

    def decode(self, raw: bytes) -> Envelope:
        """`decode` with this codec's keys."""
        checked = self._verdicts.get(raw)
        if checked is not None:
            data = checked.copy_data(self._cipher)
            return Envelope(data, checked.created_at, checked.moved_to)
        envelope = decode(
            raw, keys=self._keys, accept_unsigned=self._accept_unsigned, cipher=self._cipher
        )
        if len(raw) <= self._verdicts.largest:
            self._keep(raw, _Checked.of(envelope, raw, _IMMUTABLE))
        return envelope

    def _keep(self, raw: bytes, checked: _Checked | None) -> None:
        if checked is not None:
            self._verdicts.put(raw, checked)


# What a decoded value can be that no one can change in place (lists, dicts and sets can),
# and of those, what msgpack gives back as exactly what it was given.
_EXACT: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})
_IMMUTABLE: frozenset[type] = _EXACT | {
    datetime.datetime,
    datetime.date,
    datetime.time,
    uuid.UUID,
    decimal.Decimal,
}


class _Checked:
    """What `Decoder` keeps of bytes it verified, and how it gives out their data."""

    __slots__ = ("created_at", "frozen", "marshalled", "moved_to", "raw")

    def __init__(
        self,
        created_at: float,
        moved_to: str | None,
        *,
        frozen: dict[str, Any] | None = None,
        marshalled: bytes | None = None,
        raw: bytes = b"",
    ) -> None:
        self.created_at = created_at
        self.moved_to = moved_to
        self.frozen = frozen  # the data, when every value is immutable
        self.marshalled = marshalled  # otherwise the data for `marshal`, if it takes it
        self.raw = raw  # otherwise the bytes, to decode again

    @classmethod
    def of(
        cls, envelope: Envelope, raw: bytes, immutable: frozenset[type], *, copy: bool = False
    ) -> _Checked | None:
        data, created_at, moved_to = envelope.data, envelope.created_at, envelope.moved_to
        if set(map(type, data.values())) <= immutable:
            # A copy: the caller keeps `data` (a fresh decode's, or the one just encoded).
            return cls(created_at, moved_to, frozen=dict(data))
        try:
            # marshal copies nested builtins in C, faster than parsing the payload again;
            # it only ever reads bytes made here, from data that was just verified.
            return cls(created_at, moved_to, marshalled=marshal.dumps(data))
        except ValueError:  # a value marshal does not know (datetime, Markup, ...)
            return None if copy else cls(created_at, moved_to, raw=raw)

    def copy_data(self, cipher: Cipher | None) -> dict[str, Any]:
        if self.frozen is not None:
            return dict(self.frozen)
        if self.marshalled is not None:
            data: dict[str, Any] = marshal.loads(self.marshalled)
            return data
        return decode(self.raw, cipher=cipher).data


def _check_signature(
    mac: bytes, header: bytes, payload: bytes, keys: Sequence[bytes], accept_unsigned: bool
) -> None:
    if not mac:
        if accept_unsigned:
            return
        raise CorruptSessionError(
            CorruptReason.UNSIGNED,
            "the record carries no signature (written by sessionguard 0.1, or forged) and "
            "unsigned_records='reject'",
        )
    if not any(hmac.compare_digest(_digest(header, payload, key), mac) for key in keys):
        raise CorruptSessionError(
            CorruptReason.BAD_SIGNATURE,
            "the record's signature matches none of the secret keys (forged, or signed "
            "with a key that was since removed from secret_key)",
        )


def _parse(payload: bytes, *, as_json: bool) -> Envelope:
    try:
        if as_json:
            body = json.loads(payload, object_hook=values.from_json)
        else:
            body = msgpack.unpackb(
                payload, raw=False, strict_map_key=False, ext_hook=values.msgpack_ext_hook
            )
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


def _digest(header: bytes, payload: bytes, key: bytes = b"") -> bytes:
    hasher = hashlib.blake2b(header, digest_size=_DIGEST_SIZE, key=key)
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
                    _json_dumps(values.to_json(part))
                else:
                    msgpack.packb(
                        part, use_bin_type=True, strict_types=True, default=values.msgpack_default
                    )
            except (TypeError, ValueError, OverflowError):
                return TypeError(
                    f"{what} {key!r} of type {type(part).__name__} cannot be "
                    f"stored with {serializer}: {exc}. Store str, int, float, bool, None, "
                    "bytes, lists, tuples, sets, dicts with str keys, datetime/date/time, "
                    "UUID, Decimal or Markup."
                )
    return TypeError(f"session cannot be stored with {serializer}: {exc}")
