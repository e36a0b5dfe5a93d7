"""`codec.KeyedCodec`: the request path's codec, which verifies each distinct byte string once.

What it may never do: give two requests the same mutable object, return anything but what
`decode` returns for the same bytes, or let a verdict about some bytes stand for others.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st
from markupsafe import Markup

from sessionguard.codec import Envelope, KeyedCodec, Serializer, decode, encode, record_keys
from sessionguard.errors import CorruptReason, CorruptSessionError

KEYS = record_keys([b"codec-test-secret"])
OTHER_KEYS = record_keys([b"another-secret"])

_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
    | st.binary(max_size=6)
    | st.datetimes()
    | st.datetimes(timezones=st.sampled_from([datetime.UTC, ZoneInfo("Europe/Paris")]))
    | st.dates()
    | st.uuids()
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    | st.text(max_size=6).map(Markup)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        | st.sets(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=3)
    ),
    max_leaves=8,
)
sessions = st.dictionaries(st.text(max_size=6), _values, max_size=4)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (Markup("x") == "x" would hide a loss)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=150, deadline=None)
@given(sessions, st.sampled_from(["msgpack", "json"]))
def test_every_call_returns_what_decode_returns(data: dict[str, Any], serializer: str) -> None:
    chosen: Serializer = "json" if serializer == "json" else "msgpack"
    raw = encode(Envelope(data, 1_700_000_000.5), chosen, key=KEYS[0])
    expected = decode(raw, keys=KEYS)
    codec = KeyedCodec(KEYS)
    for _ in range(3):  # the first call verifies; the others answer from what it kept
        got = codec.decode(raw)
        assert same(got.data, expected.data)
        assert (got.created_at, got.moved_to) == (expected.created_at, expected.moved_to)


@settings(max_examples=150, deadline=None)
@given(sessions)
def test_bytes_it_encoded_itself_read_back_as_decode_reads_them(data: dict[str, Any]) -> None:
    # What it encoded, it may read back without checking; what it gives back must still
    # be what decoding the bytes gives (a zoned datetime comes back with a fixed offset).
    codec = KeyedCodec(KEYS)
    raw = codec.encode(Envelope(data, 1_700_000_000.5))
    expected = decode(raw, keys=KEYS)
    _mutate(data)  # the caller's data is the caller's: changing it changes nothing kept
    for _ in range(2):
        got = codec.decode(raw)
        assert same(got.data, expected.data)
        _mutate(got.data)


def test_it_encodes_signed_with_the_newest_key() -> None:
    raw = KeyedCodec([*OTHER_KEYS, *KEYS]).encode(Envelope({"role": "admin"}, 5.0))
    assert decode(raw, keys=OTHER_KEYS).data == {"role": "admin"}
    with pytest.raises(CorruptSessionError):
        decode(raw, keys=KEYS)


def _mutate(value: Any) -> None:
    """Change every list, dict and set reachable from `value` in place."""
    if isinstance(value, dict):
        for item in list(value.values()):
            _mutate(item)
        value["added-by-request"] = "x"
    elif isinstance(value, list):
        for item in value:
            _mutate(item)
        value.append("added-by-request")
    elif isinstance(value, set):
        value.add(-12345)
    elif isinstance(value, tuple):
        for item in value:
            _mutate(item)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"user": "alice", "n": 1, "at": datetime.date(2026, 1, 2)}, id="flat"),
        pytest.param({"cart": [{"sku": "A", "qty": 1}], "roles": ["admin"]}, id="nested"),
        pytest.param(
            {"log": [datetime.datetime(2026, 1, 2), {"id": uuid.uuid4()}], "tags": {1, 2}},
            id="nested-typed",
        ),
        pytest.param({"flash": [("message", Markup("<b>hi</b>"))]}, id="markup"),
        pytest.param({"price": [decimal.Decimal("9.99")], "t": (1, [2])}, id="tuple-of-list"),
    ],
)
def test_changing_the_returned_data_in_place_never_reaches_the_next_request(
    data: dict[str, Any],
) -> None:
    raw = encode(Envelope(data, 5.0), key=KEYS[0])
    codec = KeyedCodec(KEYS)
    original = decode(raw, keys=KEYS).data
    for _ in range(3):
        got = codec.decode(raw)
        assert same(got.data, original)
        _mutate(got.data)
        got.data["top"] = 1


def test_corrupt_bytes_are_refused_every_time_with_an_exception_of_their_own() -> None:
    raw = bytearray(encode(Envelope({"user": "alice"}, 5.0), key=KEYS[0]))
    raw[-1] ^= 0x01
    codec = KeyedCodec(KEYS)
    seen = []
    for _ in range(3):
        with pytest.raises(CorruptSessionError) as info:
            codec.decode(bytes(raw))
        assert info.value.reason is CorruptReason.CHECKSUM_MISMATCH
        seen.append(info.value)
    assert len({id(exc) for exc in seen}) == 3


def test_bytes_verified_by_one_codec_are_still_checked_by_another_with_other_keys() -> None:
    raw = encode(Envelope({"role": "admin"}, 5.0), key=KEYS[0])
    assert KeyedCodec(KEYS).decode(raw).data == {"role": "admin"}
    with pytest.raises(CorruptSessionError) as info:
        KeyedCodec(OTHER_KEYS).decode(raw)
    assert info.value.reason is CorruptReason.BAD_SIGNATURE


def test_a_forgery_differing_from_a_verified_record_by_one_byte_is_caught() -> None:
    codec = KeyedCodec(KEYS)
    genuine = encode(Envelope({"role": "user"}, 5.0), key=KEYS[0])
    forged = encode(Envelope({"role": "admin"}, 5.0), key=OTHER_KEYS[0])
    assert codec.decode(genuine).data == {"role": "user"}
    with pytest.raises(CorruptSessionError) as info:
        codec.decode(forged)
    assert info.value.reason is CorruptReason.BAD_SIGNATURE


def test_unsigned_records_follow_the_codecs_setting_every_time() -> None:
    raw = encode(Envelope({"user": "alice"}, 5.0))  # unsigned, as 0.1 wrote
    assert KeyedCodec(KEYS, accept_unsigned=True).decode(raw).data == {"user": "alice"}
    refusing = KeyedCodec(KEYS, accept_unsigned=False)
    for _ in range(2):
        with pytest.raises(CorruptSessionError) as info:
            refusing.decode(raw)
        assert info.value.reason is CorruptReason.UNSIGNED


def test_records_over_the_size_it_keeps_are_decoded_in_full_each_time() -> None:
    codec = KeyedCodec(KEYS, budget=512)  # keeps records of at most 64 bytes
    raw = encode(Envelope({"blob": "x" * 500, "list": [1]}, 5.0), key=KEYS[0])
    first, second = codec.decode(raw), codec.decode(raw)
    assert first.data == second.data == {"blob": "x" * 500, "list": [1]}
    assert first.data["list"] is not second.data["list"]


def test_a_json_codec_writes_json_and_reads_it_back_every_time() -> None:
    codec = KeyedCodec(KEYS, serializer="json")
    data = {"at": datetime.datetime(2026, 1, 2, tzinfo=ZoneInfo("Europe/Paris")), "n": [1]}
    raw = codec.encode(Envelope(data, 5.0))
    expected = decode(raw, keys=KEYS)
    assert raw[3] & 0x01  # the JSON flag of the documented header
    for _ in range(3):
        got = codec.decode(raw)
        assert same(got.data, expected.data)
        _mutate(got.data)
