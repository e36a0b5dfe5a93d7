"""What the peer subjects share: the secret, and cookie values that are the session id."""

from __future__ import annotations

#: Not a secret: the benchmark servers listen on 127.0.0.1 only and are thrown away.
SECRET_KEY = "benchmark-secret-key-not-for-production"


def plain_id(cookie_value: str) -> str:
    """The session id of a peer whose cookie value is the id itself."""
    return cookie_value
