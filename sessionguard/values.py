"""The Python values a session keeps with their types, beyond what msgpack and JSON know.

Flask's session (its tagged JSON) gives back a `tuple`, `bytes`, `markupsafe.Markup`,
`uuid.UUID` or `datetime` as it was stored; an app switching to sessionguard must get the
same (a flashed message is a `(category, Markup)` tuple). So do we, in both serializers,
and for `date`, `time`, `Decimal`, `set` and `frozenset` too:

* msgpack: each such value is an extension type (a numbered type msgpack carries beside
  its own), so no user data can ever be read as a tag.
* JSON: each becomes `{"\\u0000": [tag, value]}`; a user's own dict whose only key is
  `"\\u0000"` is written as a tagged list of pairs, so it cannot be mistaken for a tag
  either.

Anything else (an object, a function, a `dict` with non-`str` keys) cannot be stored:
`check_storable` says so at assignment, naming the key and the type.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable
from typing import Any

import msgpack

__all__ = ["check_storable", "from_json", "msgpack_default", "msgpack_ext_hook", "to_json"]

_JSON_TAG = "\x00"

# (msgpack extension code, JSON tag, type, to a str/bytes/list, from it)
_Converter = tuple[int, str, type, Callable[[Any], Any], Callable[[Any], Any]]


def _markup() -> type | None:
    try:
        from markupsafe import Markup  # Flask's dependency; sessionguard does not need it
    except ImportError:  # pragma: no cover - markupsafe comes with Flask and Jinja
        return None
    return Markup


def _from_markup(text: str) -> Any:
    markup = _markup()
    return markup(text) if markup is not None else text


# Checked in this order: `datetime` before `date`, of which it is a subclass.
_SCALARS: list[_Converter] = [
    (4, "uuid", uuid.UUID, lambda v: v.hex, lambda s: uuid.UUID(s)),
    (5, "datetime", dt.datetime, lambda v: v.isoformat(), dt.datetime.fromisoformat),
    (6, "date", dt.date, lambda v: v.isoformat(), dt.date.fromisoformat),
    (7, "time", dt.time, lambda v: v.isoformat(), dt.time.fromisoformat),
    (8, "decimal", decimal.Decimal, str, decimal.Decimal),
]
# type -> (msgpack extension code, JSON tag); exact types only (a subclass is not these)
_COLLECTIONS: dict[type, tuple[int, str]] = {
    tuple: (1, "tuple"),
    set: (2, "set"),
    frozenset: (3, "frozenset"),
}
_MARKUP_CODE = 9


# -- msgpack ------------------------------------------------------------------------------


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(
        value, use_bin_type=True, strict_types=True, default=msgpack_default
    )
    return packed


def msgpack_default(value: Any) -> Any:
    """`msgpack.packb(default=...)` (with `strict_types=True`): tag what msgpack lacks."""
    collection = _COLLECTIONS.get(type(value))
    if collection is not None:
        return msgpack.ExtType(collection[0], _pack(list(value)))
    markup = _markup()
    if markup is not None and isinstance(value, markup):
        return msgpack.ExtType(_MARKUP_CODE, str(value).encode())
    for code, _, kind, dump, _ in _SCALARS:
        if isinstance(value, kind):
            return msgpack.ExtType(code, dump(value).encode())
    return _base_value(value)


def _base_value(value: Any) -> Any:
    """A subclass of a type both serializers store (an `IntEnum`, an `OrderedDict`): its
    plain value, as Flask's tagged JSON stores it; anything else cannot be stored."""
    if isinstance(value, int):  # bool included: its subclass cannot exist
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not a value a session can store")


def msgpack_ext_hook(code: int, data: bytes) -> Any:
    """`msgpack.unpackb(ext_hook=...)`: the value each extension type stands for."""
    for kind, (known_code, _) in _COLLECTIONS.items():
        if code == known_code:
            items = msgpack.unpackb(
                data, raw=False, strict_map_key=False, ext_hook=msgpack_ext_hook
            )
            return kind(items)
    if code == _MARKUP_CODE:
        return _from_markup(data.decode())
    for known, _, _, _, load in _SCALARS:
        if code == known:
            return load(data.decode())
    raise ValueError(f"unknown msgpack extension type {code}")


# -- JSON ---------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """`value` with every type JSON lacks replaced by a tagged object."""
    if type(value) is float and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number JSON can store")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, dict):
        if list(value) == [_JSON_TAG]:  # the user's own dict that looks like a tag
            return {_JSON_TAG: ["dict", [[k, to_json(v)] for k, v in value.items()]]}
        if not all(isinstance(key, str) for key in value):
            raise TypeError("a dict with keys that are not str is not a value a session can store")
        return {key: to_json(item) for key, item in value.items()}
    if type(value) is list:
        return [to_json(item) for item in value]
    collection = _COLLECTIONS.get(type(value))
    if collection is not None:
        return {_JSON_TAG: [collection[1], [to_json(item) for item in value]]}
    if isinstance(value, bytes):
        return {_JSON_TAG: ["bytes", base64.b64encode(value).decode()]}
    markup = _markup()
    if markup is not None and isinstance(value, markup):
        return {_JSON_TAG: ["markup", str(value)]}
    for _, tag, kind, dump, _ in _SCALARS:
        if isinstance(value, kind):
            return {_JSON_TAG: [tag, dump(value)]}
    return to_json(_base_value(value))


def from_json(value: dict[str, Any]) -> Any:
    """`json.loads(object_hook=...)`: a tagged object back to its value."""
    if len(value) != 1 or _JSON_TAG not in value:
        return value
    tag, item = value[_JSON_TAG]
    if tag == "dict":
        return {key: inner for key, inner in item}
    for kind, (_, kind_tag) in _COLLECTIONS.items():
        if tag == kind_tag:
            return kind(item)
    if tag == "bytes":
        return base64.b64decode(item)
    if tag == "markup":
        return _from_markup(item)
    for _, known, _, _, load in _SCALARS:
        if tag == known:
            return load(item)
    raise ValueError(f"unknown JSON tag {tag!r}")


# -- at assignment ------------------------------------------------------------------------


def check_storable(key: str, value: Any) -> None:
    """Raise `TypeError` naming `key` unless `value` can be stored (with either serializer).

    Called when the view assigns, so the error surfaces there, not as a 500 after the
    view returned.
    """
    try:
        _pack(value)
        to_json(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"session value for key {key!r} of type {type(value).__name__} cannot be stored: "
            f"{exc}. Store str, int, float, bool, None, bytes, lists, tuples, sets, dicts "
            "with str keys, datetime/date/time, UUID, Decimal or Markup."
        ) from exc
