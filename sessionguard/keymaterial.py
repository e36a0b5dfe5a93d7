"""The keys of `RecordCipher` and `HashedIds`: 32 random bytes, or text with at least as
much randomness, from which 32 bytes are derived (one derivation per purpose, so the same
text given to both yields unrelated keys)."""

from __future__ import annotations

import hashlib

from .errors import ConfigurationError

__all__ = ["key_material"]

_MIN_TEXT_KEY = 32


def key_material(key: bytes | str, *, purpose: bytes, owner: str) -> bytes:
    """32 key bytes from `key`; `ConfigurationError`, naming `owner`, for too weak a key."""
    if isinstance(key, str):
        if len(key) < _MIN_TEXT_KEY:
            raise ConfigurationError(
                f"a {owner} key given as text needs at least {_MIN_TEXT_KEY} characters "
                f"of randomness; use {owner}.new_key() for 32 random bytes"
            )
        return hashlib.sha256(purpose + key.encode()).digest()
    if len(key) != 32:
        raise ConfigurationError(
            f"a {owner} key is 32 bytes, got {len(key)}; use {owner}.new_key()"
        )
    return key
