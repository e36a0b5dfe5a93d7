"""Reading a stored `Record`: the store's verdict on its own bytes first, then the codec's.

A store that frames its records (`FileStore`) knows when a file is damaged before the
codec sees a byte, and says so in `Record.damage`; every other check is the codec's.
Everything that turns a record into a session goes through `decode_record`, so a damaged
record reaches the corruption policy the same way whichever check caught it.
"""

from __future__ import annotations

from .codec import Envelope, decode
from .stores.base import Record

__all__ = ["decode_record"]


def decode_record(record: Record) -> Envelope:
    """The envelope in `record`, or `CorruptSessionError` with the reason it is unreadable."""
    if record.damage is not None:
        raise record.damage
    return decode(record.payload)
