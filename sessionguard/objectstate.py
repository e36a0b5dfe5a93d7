"""A session that is an object (Quixote's `session3.Session`): its state as session data.

The state of such a session is its instance attributes and, for a mapping session
(`session3.DictSession`, a `collections.UserDict`), its items. It is stored as

```
{"attributes": {name: value, ...}, "items": {key: value, ...}, "saved_at": unix time}
```

inside the envelope, with the typed values of `sessionguard.values`: never the object,
never pickle. `Fields` is the flat view merges work on, one entry per attribute or item.
`sessionguard.quixote` stores and merges it; `sessionguard.sources.quixote_dir` turns the
pickled sessions of a `DirectorySessionStore` into it.
"""

from __future__ import annotations

from collections import UserDict
from collections.abc import Collection, Mapping
from typing import Any, Literal

import msgpack

from . import values

__all__ = [
    "ATTRIBUTES",
    "ITEMS",
    "SAVED_AT",
    "Field",
    "Fields",
    "as_data",
    "fields_in",
    "fields_of",
    "pack",
    "restore",
    "unpack",
]

ATTRIBUTES: Literal["attributes"] = "attributes"
ITEMS: Literal["items"] = "items"
SAVED_AT = "saved_at"

#: An attribute `(ATTRIBUTES, name)` or an item `(ITEMS, key)` of a session.
Field = tuple[str, str]
Fields = dict[Field, Any]

_STORABLE = (
    "Store str, int, float, bool, None, bytes, lists, tuples, sets, dicts with str keys, "
    "datetime/date/time, UUID or Decimal (a user's id, say, not the user object)."
)


def fields_of(session: object, *, skip: Collection[str] = ("id",)) -> Fields:
    """The attributes (but those in `skip`) and, for a `UserDict`, the items of `session`.

    Raises `TypeError` for an object without a `__dict__` or an item whose key is no `str`.
    """
    try:
        attributes = vars(session)
    except TypeError:
        raise TypeError(
            f"{type(session).__name__} keeps no instance __dict__ (__slots__?); a session "
            "class must keep its state in instance attributes"
        ) from None
    mapping = isinstance(session, UserDict)
    fields: Fields = {}
    for name, value in attributes.items():
        if name not in skip and not (mapping and name == "data"):
            fields[(ATTRIBUTES, name)] = value
    if isinstance(session, UserDict):
        for key, value in session.data.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"session item key {key!r} of type {type(key).__name__} cannot be stored: "
                    "the keys of a DictSession must be str"
                )
            fields[(ITEMS, key)] = value
    return fields


def pack(field: Field, value: Any) -> bytes:
    """`value` as msgpack bytes; `TypeError` naming the attribute or item if it cannot be stored."""
    try:
        packed: bytes = msgpack.packb(
            value, use_bin_type=True, strict_types=True, default=values.msgpack_default
        )
    except (TypeError, ValueError, OverflowError) as exc:
        kind, name = field
        what = "attribute" if kind == ATTRIBUTES else "item"
        raise TypeError(
            f"session {what} {name!r} of type {type(value).__name__} cannot be stored: "
            f"{exc}. {_STORABLE}"
        ) from exc
    return packed


def unpack(packed: bytes) -> Any:
    """The value `pack` was given (a fresh copy)."""
    return msgpack.unpackb(
        packed, raw=False, strict_map_key=False, ext_hook=values.msgpack_ext_hook
    )


def as_data(fields: Mapping[Field, Any], saved_at: float) -> dict[str, Any]:
    """The envelope data of a session's fields."""
    data: dict[str, Any] = {ATTRIBUTES: {}, ITEMS: {}, SAVED_AT: saved_at}
    for (kind, name), value in fields.items():
        data[kind][name] = value
    return data


def fields_in(data: Mapping[str, Any]) -> tuple[Fields, float] | None:
    """The fields and save time in envelope data, or `None` if it is not a session object's."""
    attributes, items, saved_at = data.get(ATTRIBUTES), data.get(ITEMS), data.get(SAVED_AT)
    if (
        not isinstance(attributes, dict)
        or not isinstance(items, dict)
        or isinstance(saved_at, bool)
        or not isinstance(saved_at, int | float)
    ):
        return None
    fields: Fields = {(ATTRIBUTES, name): value for name, value in attributes.items()}
    fields.update(((ITEMS, key), value) for key, value in items.items())
    if not all(isinstance(name, str) for _, name in fields):
        return None
    return fields, float(saved_at)


def restore(cls: type[Any], fields: Mapping[Field, Any], **attributes: Any) -> Any:
    """An instance of `cls` holding `fields` (and `attributes`), made without calling its
    `__init__` (session3's asks Quixote for the current request)."""
    new: Any = cls.__new__
    session = new(cls)
    state = {name: value for (kind, name), value in fields.items() if kind == ATTRIBUTES}
    state.update(attributes)
    if isinstance(session, UserDict):
        state["data"] = {key: value for (kind, key), value in fields.items() if kind == ITEMS}
    session.__dict__.update(state)
    return session
