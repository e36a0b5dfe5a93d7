"""The envelope codec: round trips, and every kind of damage reported as `CorruptSessionError`."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import hashlib
import json
import os
import pickle
import struct
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import assume, given, settings, strategies as st
from markupsafe import Markup

from sessionguard.codec import Envelope, Serializer, decode, encode, record_keys
from sessionguard.errors import CorruptReason, CorruptSessionError

FAST = settings(max_examples=200, deadline=None)

# Lone surrogates are not valid UTF-8, so msgpack cannot store them (tested separately).
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)


def _tree(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
        max_leaves=6,
    )


json_sessions = st.dictionaries(_text, _tree(_json_leaves), max_size=4)
msgpack_sessions = st.dictionaries(_text, _tree(_json_leaves | st.binary(max_size=8)), max_size=4)
moved_to = st.none() | st.text("0123456789abcdef", min_size=40, max_size=40)
created_at = st.floats(min_value=0, max_value=4e9)


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[Envelope, Serializer]:
    serializer: Serializer = draw(st.sampled_from(["msgpack", "json"]))
    data = draw(msgpack_sessions if serializer == "msgpack" else json_sessions)
    return Envelope(data, draw(created_at), draw(moved_to)), serializer


def wrap(payload: bytes, *, flags: int = 0, version: int = 1) -> bytes:
    """Build an envelope by hand from the documented layout, so the test does not trust `encode`."""
    header = struct.pack(">2sBBI", b"SG", version, flags, len(payload))
    return header + hashlib.blake2b(header + payload, digest_size=16).digest() + payload


def reason_of(raw: bytes) -> CorruptReason:
    with pytest.raises(CorruptSessionError) as info:
        decode(raw)
    return info.value.reason


# -- properties --------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=200) | st.binary(max_size=200).map(lambda tail: b"SG\x01" + tail))
def test_decode_of_arbitrary_bytes_returns_envelope_or_raises_corrupt_only(raw: bytes) -> None:
    try:
        envelope = decode(raw)
    except CorruptSessionError as exc:
        assert isinstance(exc.reason, CorruptReason)
    else:
        assert isinstance(envelope, Envelope)


_any_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@FAST
@given(_any_value, st.sampled_from(["msgpack", "json"]))
def test_decode_of_checksummed_foreign_payload_returns_envelope_or_undecodable(
    body: Any, serializer: str
) -> None:
    # Valid header and checksum around any msgpack/JSON value: the body's shape is checked.
    if serializer == "json":
        try:
            payload = json.dumps(body).encode()  # NaN and huge ints included
        except TypeError:  # bytes inside: send Python's repr, which is not JSON
            payload = repr(body).encode()
        raw = wrap(payload, flags=1)
    else:
        try:
            raw = wrap(msgpack.packb(body, use_bin_type=True))
        except OverflowError:  # an int msgpack has no encoding for
            assume(False)
    try:
        envelope = decode(raw)
    except CorruptSessionError as exc:
        assert exc.reason is CorruptReason.UNDECODABLE
    else:
        assert all(isinstance(key, str) for key in envelope.data)


@FAST
@given(envelopes())
def test_encode_then_decode_returns_equal_envelope(case: tuple[Envelope, Serializer]) -> None:
    envelope, serializer = case
    assert decode(encode(envelope, serializer)) == envelope


@FAST
@given(envelopes())
def test_every_truncation_of_an_envelope_is_reported_truncated_or_empty(
    case: tuple[Envelope, Serializer],
) -> None:
    raw = encode(*case)
    assert reason_of(b"") is CorruptReason.EMPTY
    for length in range(1, len(raw)):
        try:
            decode(raw[:length])
        except CorruptSessionError as exc:
            assert exc.reason is CorruptReason.TRUNCATED, length
        else:
            pytest.fail(f"a {length}-byte prefix decoded")


@FAST
@given(envelopes())
def test_every_single_bit_flip_of_an_envelope_is_reported_corrupt(
    case: tuple[Envelope, Serializer],
) -> None:
    raw = encode(*case)
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:  # not pytest.raises: this loop runs thousands of times per example
            decode(bytes(flipped))
        except CorruptSessionError:
            continue
        pytest.fail(f"flipping bit {bit} went unnoticed")


# -- each reason -------------------------------------------------------------------------

SAMPLE = Envelope({"user": 42, "cart": ["a", "b"]}, created_at=1_700_000_000.0)


def test_empty_record_is_reported_empty() -> None:
    assert reason_of(b"") is CorruptReason.EMPTY


@pytest.mark.parametrize("length", [1, 8, 23, 24, 30])
def test_cut_off_record_is_reported_truncated(length: int) -> None:
    assert reason_of(encode(SAMPLE)[:length]) is CorruptReason.TRUNCATED


@pytest.mark.parametrize(
    "raw", [b"XX" + encode(SAMPLE)[2:], b'{"user": 42}', b"\x00" * 40, b"S\x00"]
)
def test_foreign_bytes_are_reported_bad_magic(raw: bytes) -> None:
    assert reason_of(raw) is CorruptReason.BAD_MAGIC


def test_unsupported_format_version_with_valid_checksum_is_reported_bad_magic() -> None:
    payload = msgpack.packb([1.0, None, {}], use_bin_type=True)
    assert reason_of(wrap(payload, version=3)) is CorruptReason.BAD_MAGIC
    assert reason_of(wrap(payload, flags=0x80)) is CorruptReason.BAD_MAGIC
    assert decode(wrap(payload)) == Envelope({}, 1.0)  # the same bytes at version 1 are fine


def wrap_signed(payload: bytes, key: bytes) -> bytes:
    """A signed (version 2) envelope built by hand from the documented layout."""
    header = struct.pack(">2sBBI", b"SG", 2, 0, len(payload))
    mac = hashlib.blake2b(header + payload, digest_size=16, key=key).digest()
    checksum = hashlib.blake2b(header + mac + payload, digest_size=16).digest()
    return header + checksum + mac + payload


KEY, OLD_KEY, ATTACKER_KEY = b"k" * 32, b"o" * 32, b"a" * 32


def test_a_signed_record_decodes_with_its_key_or_any_older_one() -> None:
    payload = msgpack.packb([1.0, None, {"role": "user"}], use_bin_type=True)
    assert decode(wrap_signed(payload, KEY), keys=[KEY, OLD_KEY]).data == {"role": "user"}
    assert decode(wrap_signed(payload, OLD_KEY), keys=[KEY, OLD_KEY]).data == {"role": "user"}
    signed = encode(Envelope({"role": "user"}, 1.0), key=KEY)
    assert signed == wrap_signed(payload, KEY)


def test_a_record_signed_by_another_key_is_a_forgery_not_damage() -> None:
    payload = msgpack.packb([1.0, None, {"role": "admin"}], use_bin_type=True)
    forged = wrap_signed(payload, ATTACKER_KEY)

    with pytest.raises(CorruptSessionError) as info:
        decode(forged, keys=[KEY])
    assert info.value.reason is CorruptReason.BAD_SIGNATURE
    # A tool without the secret still sees intact bytes: damage and forgery stay apart.
    assert decode(forged).data == {"role": "admin"}


def test_a_flipped_bit_in_the_signature_is_damage() -> None:
    raw = bytearray(encode(SAMPLE, key=KEY))
    raw[30] ^= 0x01  # inside the signature
    assert reason_of(bytes(raw)) is CorruptReason.CHECKSUM_MISMATCH


def test_unsigned_records_are_read_or_refused_as_configured() -> None:
    unsigned = wrap(msgpack.packb([1.0, None, {"role": "admin"}], use_bin_type=True))

    assert decode(unsigned, keys=[KEY]).data == {"role": "admin"}
    with pytest.raises(CorruptSessionError) as info:
        decode(unsigned, keys=[KEY], accept_unsigned=False)
    assert info.value.reason is CorruptReason.UNSIGNED


def test_record_keys_are_bound_to_their_purpose() -> None:
    keys = record_keys([b"secret", b"older"])
    assert len(keys) == 2 and len(set(keys)) == 2
    assert b"secret" not in keys[0] and len(keys[0]) == 32


def test_changed_payload_byte_is_reported_checksum_mismatch() -> None:
    raw = bytearray(encode(SAMPLE))
    raw[-1] ^= 0x01
    assert reason_of(bytes(raw)) is CorruptReason.CHECKSUM_MISMATCH


def test_trailing_bytes_after_payload_are_reported_checksum_mismatch() -> None:
    assert reason_of(encode(SAMPLE) + b"\x00") is CorruptReason.CHECKSUM_MISMATCH


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickled_dict_is_reported_legacy_pickle(protocol: int) -> None:
    raw = pickle.dumps({"_auth_user_id": "1", "cart": [1, 2]}, protocol=protocol)
    assert reason_of(raw) is CorruptReason.LEGACY_PICKLE


class _MakesDirectoryWhenUnpickled:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.path),)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_decode_never_unpickles_a_malicious_pickle(tmp_path: Path, protocol: int) -> None:
    target = tmp_path / "unpickled"
    raw = pickle.dumps({"x": _MakesDirectoryWhenUnpickled(target)}, protocol=protocol)

    assert reason_of(raw) is CorruptReason.LEGACY_PICKLE
    assert not target.exists()
    pickle.loads(raw)  # proof that unpickling these bytes has the side effect
    assert target.is_dir()


@pytest.mark.parametrize(
    ("payload", "flags"),
    [
        (b"\xc1", 0),  # a byte msgpack never uses
        (b"not json", 1),
        (msgpack.packb({"user": 42}), 0),  # a bare dict, not [created_at, moved_to, data]
        (msgpack.packb([1.0, None]), 0),
        (msgpack.packb([1.0, None, {1: "int key"}]), 0),
        (msgpack.packb([True, None, {}]), 0),
        (msgpack.packb(["1.0", None, {}]), 0),
        (msgpack.packb([1.0, 7, {}]), 0),
        (msgpack.packb([1.0, None, []]), 0),
        (b"[" + b"9" * 400 + b",null,{}]", 1),  # too big for a float
        (b"[NaN,null,{}]", 1),
        (b"[Infinity,null,{}]", 1),
        # Forward pointers naming something that is not a session id (a planted record).
        (msgpack.packb([1.0, "../../etc/passwd", {}]), 0),
        (msgpack.packb([1.0, "", {}]), 0),
        (msgpack.packb([1.0, "a" * 129, {}]), 0),
    ],
)
def test_checksummed_payload_that_is_not_a_session_is_reported_undecodable(
    payload: bytes, flags: int
) -> None:
    assert reason_of(wrap(payload, flags=flags)) is CorruptReason.UNDECODABLE


# -- what cannot be encoded --------------------------------------------------------------


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
@pytest.mark.parametrize("value", [object(), complex(1, 2), [print]])
def test_unencodable_value_raises_type_error_naming_the_key(
    serializer: Serializer, value: object
) -> None:
    envelope = Envelope({"fine": 1, "the_bad_key": value})
    with pytest.raises(TypeError, match="'the_bad_key'"):
        encode(envelope, serializer)


TYPED = {
    "tuple": ("info", "flashed"),
    "bytes": b"\x00\x01\xff",
    "markup": Markup("<b>bold</b>"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "naive": datetime.datetime(2024, 1, 2, 3, 4, 5, 678901),
    "aware": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    "date": datetime.date(2024, 1, 2),
    "time": datetime.time(3, 4, 5),
    "decimal": decimal.Decimal("1.10"),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a"}),
    "nested": [("a", 1), {"when": datetime.date(2024, 1, 1)}],
    # The user's own dict that looks like the JSON tag must stay a dict.
    "lookalike": {"\x00": ["tuple", [1, 2]]},
}


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
def test_values_keep_their_types_through_both_serializers(serializer: Serializer) -> None:
    data = decode(encode(Envelope(TYPED, 1.0), serializer)).data

    assert data == TYPED
    for key, value in TYPED.items():
        assert type(data[key]) is type(value), key
    assert type(data["nested"][0]) is tuple
    assert data["aware"].tzinfo is not None and data["naive"].tzinfo is None


def test_subclasses_of_plain_types_are_stored_as_their_plain_values() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    data = decode(encode(Envelope({"level": Level.HIGH, "od": collections.OrderedDict(a=1)}))).data
    assert data == {"level": 3, "od": {"a": 1}}
    assert type(data["level"]) is int and type(data["od"]) is dict


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_json_serializer_rejects_nan_and_infinity_naming_the_key(value: object) -> None:
    with pytest.raises(TypeError, match="'score'"):
        encode(Envelope({"score": value}), "json")


def test_msgpack_rejects_key_with_lone_surrogate_naming_the_key() -> None:
    with pytest.raises(TypeError, match=r"session key '\\ud800'"):
        encode(Envelope({"\ud800": 1}), "msgpack")


def test_msgpack_rejects_integer_beyond_64_bits_naming_the_key() -> None:
    with pytest.raises(TypeError, match="'big'"):
        encode(Envelope({"big": 2**64}), "msgpack")
