"""Reading a stored `Record`: the store's verdict on its own bytes first, then the codec's.

A store that frames its records (`FileStore`) knows when a file is damaged before the
codec sees a byte, and says so in `Record.damage`; every other check is the codec's.
Everything that turns a record into a session goes through `decode_record`, so a damaged
record reaches the corruption policy the same way whichever check caught it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .codec import Cipher, Envelope, decode
from .stores.base import Record

__all__ = ["decode_record"]


def decode_record(
    record: Record,
    *,
    keys: Sequence[bytes] | None = None,
    accept_unsigned: bool = True,
    cipher: Cipher | None = None,
    decoder: Callable[[bytes], Envelope] | None = None,
) -> Envelope:
    """The envelope in `record`, or `CorruptSessionError` with the reason it is unreadable.

    `keys` and `accept_unsigned` are `codec.decode`'s: with keys, the signature is checked.
    A `decoder` (a `codec.Decoder` made with the keys) replaces them on the read path.
    """
    if record.damage is not None:
        raise record.damage
    if decoder is not None:
        return decoder(record.payload)
    return decode(record.payload, keys=keys, accept_unsigned=accept_unsigned, cipher=cipher)
