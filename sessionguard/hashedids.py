"""`HashedIds`: records stored under a keyed hash of the session id, so that a copy of the
store (a leaked dump, a backup) holds no session id a thief could put in a cookie.

With `hashed_ids=HashedIds(key)`, the middleware looks a session up under
HMAC-SHA256(key, id) instead of its id, and the per-user index names each user by
HMAC-SHA256(key, user id) instead of the id the app gave. Neither can be turned back
into what it hides, and neither is any use without the key: a cookie holds the id, and
only the middleware, holding the key, finds its record.

Unlike `secret_key` and `RecordCipher`, this key cannot rotate: a record's name is all
the store knows of it, so with another key every session is looked up elsewhere, and
starts anew. A key is 32 random bytes (`HashedIds.new_key()`), or a string of at least
32 characters from which one is derived.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .keymaterial import key_material

__all__ = ["HashedIds"]

_KEY_PURPOSE = b"sessionguard.hashed-ids.v1"
# Domain separation: a session id and a user id that happen to be equal get different names.
_SESSION, _USER = b"session\x00", b"user\x00"


class HashedIds:
    """The names a store knows sessions and users by: keyed hashes of their ids."""

    def __init__(self, key: bytes | str) -> None:
        self._key = key_material(key, purpose=_KEY_PURPOSE, owner="HashedIds")

    @staticmethod
    def new_key() -> bytes:
        """32 random bytes: a fresh key for `HashedIds`."""
        return secrets.token_bytes(32)

    def of_session(self, session_id: str) -> str:
        """The store key of the session `session_id` names: 64 hex digits, longer than
        any session id sessionguard issues (40), so plain and hashed names never meet."""
        return hmac.new(self._key, _SESSION + session_id.encode(), hashlib.sha256).hexdigest()

    def of_user(self, user: str) -> str:
        """The name the per-user index knows `user` by."""
        return hmac.new(self._key, _USER + user.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "HashedIds(key=...)"  # never the key
