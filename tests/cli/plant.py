"""Records to plant in a store: live, expired, and one corrupt record per reason.

Every payload is made the way the damage happens in production (a crash after
`open(O_TRUNC)`, a half-written file, a flipped bit, a pickle left by another backend,
a checksummed record of a newer format, a well-formed envelope around something that is
not a session); none of them is built by calling the code under test.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from dataclasses import dataclass, field

import msgpack

from sessionguard.codec import Envelope, encode
from sessionguard.errors import CorruptReason
from sessionguard.stores import SyncStore

NOW_OFFSET_LIVE = 3600.0
NOW_OFFSET_EXPIRED = -600.0


def envelope(header_fields: tuple[bytes, int, int], body: bytes) -> bytes:
    """A record with a correct checksum over the given header fields and body."""
    header = struct.pack(">2sBBI", *header_fields, len(body))
    return header + hashlib.blake2b(header + body, digest_size=16).digest() + body


class Pickled:
    """Unpickling this creates `marker`: proof that someone ran pickle on a planted record."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def valid_payload(data: dict[str, object], created_at: float) -> bytes:
    return encode(Envelope(data, created_at))


def corrupt_payloads(marker: str) -> dict[CorruptReason, bytes]:
    good = valid_payload({"user_id": 7}, 1_700_000_000.0)
    return {
        CorruptReason.EMPTY: b"",
        CorruptReason.TRUNCATED: good[:30],
        CorruptReason.BAD_MAGIC: b"<html>502 Bad Gateway</html>",
        CorruptReason.CHECKSUM_MISMATCH: good[:-1] + bytes([good[-1] ^ 0x01]),
        CorruptReason.LEGACY_PICKLE: pickle.dumps({"x": Pickled(marker)}, protocol=4),
        CorruptReason.UNDECODABLE: envelope((b"SG", 1, 0), msgpack.packb([1, 2, 3])),
    }


def key(kind: str, index: int) -> str:
    """Distinct, valid keys that say what they are, so a failure message is readable."""
    return f"{kind}-{index:04d}-" + hashlib.sha1(f"{kind}{index}".encode()).hexdigest()[:24]


@dataclass
class Planted:
    live: dict[str, bytes] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)
    corrupt: dict[str, tuple[CorruptReason, bytes]] = field(default_factory=dict)


def plant(
    store: SyncStore, now: float, marker: str, *, live: int = 12, expired: int = 5
) -> Planted:
    planted = Planted()
    for i in range(live):
        payload = valid_payload({"user_id": i, "cart": list(range(i % 5))}, now)
        store.save(key("live", i), payload, expires_at=now + NOW_OFFSET_LIVE)
        planted.live[key("live", i)] = payload
    for i in range(expired):
        payload = valid_payload({"user_id": 100 + i}, now - 7200)
        store.save(key("expired", i), payload, expires_at=now + NOW_OFFSET_EXPIRED)
        planted.expired.append(key("expired", i))
    for i, (reason, payload) in enumerate(corrupt_payloads(marker).items()):
        store.save(key(f"corrupt-{reason}", i), payload, expires_at=now + NOW_OFFSET_LIVE)
        planted.corrupt[key(f"corrupt-{reason}", i)] = (reason, payload)
    return planted
