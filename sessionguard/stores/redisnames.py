"""Where `RedisStore` keeps each session and each user's set of sessions: its key names.

On one Redis server (or a Sentinel-managed one), a session is `<prefix><id>` and a
user's set `<prefix>user:<blake2b of the user id>`.

On Redis Cluster a script may only touch keys of one hash slot, and the script that
writes a session also changes the sets of its old and new owner. So every name carries
the hash tag of the session's bucket, one of 256 chosen by a hash of its id: the session
is `<prefix>{<bucket>}<id>`, and a user has one set per bucket,
`<prefix>{<bucket>}user:<hash>`, holding the user's sessions of that bucket. The buckets
spread over the slots, and so over the masters; listing a user's sessions reads the 256
sets, pipelined (one round trip per master).
"""

from __future__ import annotations

import hashlib

from ..errors import ConfigurationError
from .base import validate_key

__all__ = ["BUCKETS", "RedisNames"]

#: How many hash tags a cluster store spreads its sessions over.
BUCKETS = 256


class RedisNames:
    """The key names of one `RedisStore`: `prefix`, and whether it runs on a cluster."""

    def __init__(self, prefix: str, *, cluster: bool) -> None:
        if cluster and ("{" in prefix or "}" in prefix):
            # A hash tag in the prefix would put every session in one slot (one master).
            raise ConfigurationError(
                f"a RedisStore on Redis Cluster needs a prefix without braces, got {prefix!r}: "
                "the store adds its own hash tags"
            )
        self.prefix = prefix
        self.cluster = cluster
        # What the name of a session starts with, before its id: the prefix and the tag.
        self._head = len(prefix) + (4 if cluster else 0)

    def record(self, key: str) -> str:
        """The name of session `key`'s hash."""
        return self._tagged(validate_key(key)) + key

    def key_of(self, name: str) -> str:
        """The session key a name of `record` holds (anything else gives `ValueError`)."""
        return validate_key(name[self._head :])

    def user_set(self, user: str, key: str) -> str:
        """The set of `user`'s sessions that session `key` belongs in."""
        return self._tagged(key) + "user:" + _user_hash(user)

    def user_sets(self, user: str) -> list[str]:
        """Every set of `user`'s sessions."""
        hashed = _user_hash(user)
        if not self.cluster:
            return [self.prefix + "user:" + hashed]
        return [f"{self.prefix}{{{b:02x}}}user:{hashed}" for b in range(BUCKETS)]

    def sets_near(self, name: str) -> str:
        """What the names of users' sets start with, in the slot of the key `name`."""
        return name[: self._head] + "user:"  # never a session: ':' is not allowed in ids

    def pattern(self) -> str:
        """A `SCAN` pattern that matches every name of this store."""
        return "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"

    def _tagged(self, key: str) -> str:
        if not self.cluster:
            return self.prefix
        bucket = hashlib.blake2b(key.encode(), digest_size=1).digest()[0]
        return f"{self.prefix}{{{bucket:02x}}}"


def _user_hash(user: str) -> str:
    # Hashed: a user id may be anything, and never becomes part of a key name.
    # surrogatepass: any Python str round-trips, lone surrogates included.
    return hashlib.blake2b(user.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
