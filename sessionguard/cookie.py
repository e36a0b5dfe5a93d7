"""Session ids, their signed cookie form, and the Cookie / Set-Cookie header text.

No I/O. An id is 160 random bits from `secrets`, as 40 lowercase hex characters (hex so
that ids never differ only in letter case on case-insensitive file systems). The cookie
value is `<id>.<signature>`, the signature being HMAC-SHA256 of the id, so a client
cannot choose an id that the server would look up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import ConfigurationError

__all__ = ["CookieSettings", "Signer", "new_id", "read_cookie"]

ID_BYTES = 20
_SIGNED_RE = re.compile(r"([0-9a-f]{40})\.([A-Za-z0-9_-]{43})")
# The signature is bound to this purpose so a key shared with other HMAC uses cannot mint ids.
_SALT = b"sessionguard.cookie.v1|"

SameSite = Literal["lax", "strict", "none"]


def new_id() -> str:
    """Return a fresh, unguessable session id."""
    return secrets.token_hex(ID_BYTES)


def read_cookie(header: str | None, name: str) -> str | None:
    """Return the value of cookie `name` from a Cookie header, or `None`.

    Hand-rolled rather than `http.cookies.SimpleCookie`, which drops every cookie in the
    header when one of them is malformed.
    """
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None


class Signer:
    """Signs ids with the first key and accepts a signature by any key, so keys can rotate."""

    def __init__(self, secret_key: str | bytes | Sequence[str | bytes]) -> None:
        keys = [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
        if not keys or not all(keys):
            raise ConfigurationError(
                "secret_key must be a non-empty string (or a list of them, newest first); "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        self._keys = [key.encode() if isinstance(key, str) else bytes(key) for key in keys]

    def _signature(self, key: bytes, session_id: str) -> str:
        mac = hmac.new(key, _SALT + session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, session_id: str) -> str:
        return f"{session_id}.{self._signature(self._keys[0], session_id)}"

    def unsign(self, value: str) -> str | None:
        """Return the id if `value` is well formed and signed by one of the keys, else `None`."""
        match = _SIGNED_RE.fullmatch(value) if len(value) < 128 else None
        if match is None:
            return None
        session_id, signature = match.groups()
        for key in self._keys:
            if hmac.compare_digest(self._signature(key, session_id), signature):
                return session_id
        return None


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """Cookie attributes, named as in Starlette's `SessionMiddleware`."""

    name: str = "session"
    max_age: int | None = 14 * 24 * 60 * 60
    path: str = "/"
    domain: str | None = None
    same_site: SameSite = "lax"
    https_only: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", self.name):
            raise ConfigurationError(f"session_cookie {self.name!r} is not a valid cookie name")
        if self.same_site not in ("lax", "strict", "none"):
            raise ConfigurationError(
                f"same_site must be 'lax', 'strict' or 'none', got {self.same_site!r}"
            )
        if self.max_age is not None and self.max_age <= 0:
            # Max-Age=0 on every Set-Cookie would delete the cookie as soon as it is sent.
            raise ConfigurationError(
                f"max_age must be a positive number of seconds, or None for a cookie that "
                f"ends with the browser session; got {self.max_age!r}"
            )
        # Both go verbatim into Set-Cookie: a ";" would smuggle in attributes of its own.
        if not self.path.startswith("/") or re.search(r"[\x00-\x1f\x7f;]", self.path):
            raise ConfigurationError(
                f"path {self.path!r} must start with '/' and contain no ';' or control characters"
            )
        if self.domain and not re.fullmatch(r"\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", self.domain):
            raise ConfigurationError(
                f"domain {self.domain!r} is not a valid cookie domain (like 'example.com')"
            )

    def set_header(self, value: str) -> str:
        """The Set-Cookie header value that stores `value`."""
        max_age = f"; Max-Age={self.max_age}" if self.max_age is not None else ""
        return f"{self.name}={value}{max_age}{self._attributes()}"

    def clear_header(self) -> str:
        """The Set-Cookie header value that makes the browser drop the cookie."""
        expired = "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        return f"{self.name}={expired}{self._attributes()}"

    def _attributes(self) -> str:
        parts = [f"; Path={self.path}"]
        if self.domain:
            parts.append(f"; Domain={self.domain}")
        parts.append("; HttpOnly")
        parts.append(f"; SameSite={self.same_site}")
        # Browsers reject SameSite=None without Secure, so "none" implies it.
        if self.https_only or self.same_site == "none":
            parts.append("; Secure")
        return "".join(parts)
