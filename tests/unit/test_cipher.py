"""`RecordCipher` in the envelope: encrypted at rest, rotated like secret keys, and any key
trouble a corrupt reason of its own, never a crash."""

from __future__ import annotations

import hashlib
import struct

import pytest

from sessionguard.cipher import RecordCipher
from sessionguard.codec import Envelope, KeyedCodec, decode, encode, record_keys
from sessionguard.errors import ConfigurationError, CorruptReason, CorruptSessionError

KEYS = record_keys([b"cipher-test-secret"])
OLD, NEW, OTHER = (RecordCipher.new_key() for _ in range(3))
SECRET_VALUE = "4111-1111-1111-1111"
ENVELOPE = Envelope({"card": SECRET_VALUE, "user": "alice"}, 1_700_000_000.0)


def reason(raw: bytes, **options: object) -> CorruptReason:
    with pytest.raises(CorruptSessionError) as caught:
        decode(raw, **options)  # type: ignore[arg-type]
    return caught.value.reason


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
def test_an_encrypted_record_reads_back_and_shows_nothing_at_rest(serializer: str) -> None:
    cipher = RecordCipher([NEW])
    raw = encode(ENVELOPE, serializer, key=KEYS[0], cipher=cipher)  # type: ignore[arg-type]

    assert SECRET_VALUE.encode() not in raw and b"alice" not in raw
    assert raw[3] & 0x02  # the documented header's encrypted flag
    assert decode(raw, keys=KEYS, cipher=cipher) == ENVELOPE


def test_the_same_session_encrypts_differently_each_time() -> None:
    cipher = RecordCipher([NEW])
    assert encode(ENVELOPE, cipher=cipher) != encode(ENVELOPE, cipher=cipher)


def test_keys_rotate_the_first_encrypts_and_every_key_decrypts() -> None:
    before = encode(ENVELOPE, key=KEYS[0], cipher=RecordCipher([OLD]))
    rotated = RecordCipher([NEW, OLD])
    after = encode(ENVELOPE, key=KEYS[0], cipher=rotated)

    assert decode(before, keys=KEYS, cipher=rotated) == ENVELOPE
    assert decode(after, keys=KEYS, cipher=RecordCipher([NEW])) == ENVELOPE
    assert reason(after, keys=KEYS, cipher=RecordCipher([OLD])) is CorruptReason.UNKNOWN_KEY


def test_a_record_encrypted_with_an_unknown_key_or_read_without_a_cipher_is_unknown_key() -> None:
    raw = encode(ENVELOPE, key=KEYS[0], cipher=RecordCipher([OTHER]))
    assert reason(raw, keys=KEYS, cipher=RecordCipher([NEW])) is CorruptReason.UNKNOWN_KEY
    assert reason(raw, keys=KEYS) is CorruptReason.UNKNOWN_KEY


def test_an_altered_ciphertext_with_a_recomputed_checksum_does_not_authenticate() -> None:
    # Someone with write access and no keys rewrites the payload and fixes the checksum of
    # an unsigned record: the AEAD tag still refuses it.
    raw = bytearray(encode(ENVELOPE, cipher=RecordCipher([NEW])))
    raw[-1] ^= 0x01
    header = bytes(raw[:8])
    raw[8:24] = hashlib.blake2b(header + bytes(raw[24:]), digest_size=16).digest()
    assert reason(bytes(raw), cipher=RecordCipher([NEW])) is CorruptReason.BAD_SIGNATURE


def test_the_header_is_bound_to_the_ciphertext() -> None:
    # The same ciphertext under another header (the JSON flag set) does not decrypt.
    raw = encode(ENVELOPE, cipher=RecordCipher([NEW]))
    magic, version, flags, length = struct.unpack_from(">2sBBI", raw)
    header = struct.pack(">2sBBI", magic, version, flags | 0x01, length)
    payload = raw[24:]
    moved = header + hashlib.blake2b(header + payload, digest_size=16).digest() + payload
    assert reason(moved, cipher=RecordCipher([NEW])) is CorruptReason.BAD_SIGNATURE


def test_a_keyed_codec_encrypts_and_reads_its_own_writes_and_others() -> None:
    codec = KeyedCodec(KEYS, cipher=RecordCipher([NEW, OLD]))
    mine = codec.encode(ENVELOPE)
    theirs = encode(ENVELOPE, key=KEYS[0], cipher=RecordCipher([OLD]))
    for _ in range(2):  # the second time from what it kept
        assert codec.decode(mine) == ENVELOPE
        assert codec.decode(theirs) == ENVELOPE
    with pytest.raises(CorruptSessionError):
        KeyedCodec(KEYS).decode(mine)


@pytest.mark.parametrize(
    "key", [b"short", b"x" * 31, b"x" * 33, "too short for a key", ""], ids=repr
)
def test_a_weak_or_malformed_key_is_refused_at_construction(key: bytes | str) -> None:
    with pytest.raises(ConfigurationError):
        RecordCipher([key])


def test_no_keys_at_all_is_refused_and_the_repr_shows_no_key() -> None:
    with pytest.raises(ConfigurationError):
        RecordCipher([])
    cipher = RecordCipher([NEW, "a text key of at least thirty-two characters"])
    assert NEW.hex() not in repr(cipher) and "thirty" not in repr(cipher)
