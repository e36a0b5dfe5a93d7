"""Session ids, their signed cookie form, and the Cookie / Set-Cookie header text.

No I/O. An id is 160 random bits from `secrets`, as 40 lowercase hex characters (hex so
that ids never differ only in letter case on case-insensitive file systems). The cookie
value is `<id>.<signature>`, the signature being HMAC-SHA256 of the id, so a client
cannot choose an id that the server would look up.
"""

from __future__ import annotations

import base64
import enum
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_AGE",
    "CookieSettings",
    "SecretKey",
    "Signer",
    "new_id",
    "read_cookie",
    "read_cookies",
    "vary_on_cookie",
]

ID_BYTES = 20
_SIGNED_RE = re.compile(r"([0-9a-f]{40})\.([A-Za-z0-9_-]{43})")
# The signature is bound to this purpose so a key shared with other HMAC uses cannot mint ids.
_SALT = b"sessionguard.cookie.v1|"
_COOKIE_SEPARATORS = re.compile(r"[;,]")
#: A session's lifetime when nothing says otherwise: 14 days, Starlette's and Django's.
DEFAULT_MAX_AGE = 14 * 24 * 60 * 60
#: How many verified cookie values a `Signer` remembers (about 200 KB at most).
_VERIFIED_MAX = 2048

SameSite = Literal["lax", "strict", "none"]


class _Stringable(Protocol):
    def __str__(self) -> str: ...


#: A secret (`str` or `bytes`), a list of them newest first (rotation), or any object whose
#: `str()` is the secret, as Starlette accepts (`starlette.datastructures.Secret`).
SecretKey = str | bytes | Sequence[str | bytes] | _Stringable


def new_id() -> str:
    """Return a fresh, unguessable session id."""
    return secrets.token_hex(ID_BYTES)


def read_cookies(header: str | None, name: str) -> list[str]:
    """Every value of cookie `name` in a Cookie header, in order.

    A browser sends several cookies of one name when they differ in path or domain (one
    may have been set by a sibling subdomain), so the caller must weigh them all. Pairs
    are separated by `;`, and also by `,`: that is how gunicorn (and RFC 7230 for any
    repeated header) joins two `Cookie` header lines, and a cookie value cannot contain a
    comma. Hand-rolled rather than `http.cookies.SimpleCookie`, which drops every cookie
    in the header when one of them is malformed.
    """
    if not header:
        return []
    found = []
    for part in _COOKIE_SEPARATORS.split(header):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            found.append(value.strip().strip('"'))
    return found


def vary_on_cookie(vary: str | None) -> str:
    """The `Vary` header value once `Cookie` is in it: a response built from the session
    must not be served by a shared cache to another user."""
    if not vary:
        return "Cookie"
    if "cookie" in (part.strip().lower() for part in vary.split(",")) or vary.strip() == "*":
        return vary
    return f"{vary}, Cookie"


def read_cookie(header: str | None, name: str) -> str | None:
    """The first value of cookie `name` in a Cookie header, or `None`."""
    values = read_cookies(header, name)
    return values[0] if values else None


class Signer:
    """Signs ids with the first key and accepts a signature by any key, so keys can rotate."""

    def __init__(self, secret_key: SecretKey) -> None:
        if isinstance(secret_key, list | tuple):
            keys = list(secret_key)  # newest first: key rotation
        elif isinstance(secret_key, str | bytes):
            keys = [secret_key]
        else:
            # Anything else that `str()` gives the secret of, as Starlette accepts it:
            # `starlette.datastructures.Secret` (from `Config`), a settings object.
            keys = [str(secret_key)]
        if not keys or not all(keys):
            raise ConfigurationError(
                "secret_key must be a non-empty string (or a list of them, newest first); "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        self._verified: dict[str, str] = {}
        self._keys = [
            key if isinstance(key, bytes) else (key if isinstance(key, str) else str(key)).encode()
            for key in keys
        ]

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """The secret keys as bytes, newest first (records are signed with keys derived
        from them)."""
        return tuple(self._keys)

    def _signature(self, key: bytes, session_id: str) -> str:
        mac = hmac.digest(key, _SALT + session_id.encode(), "sha256")  # one call into C
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, session_id: str) -> str:
        return f"{session_id}.{self._signature(self._keys[0], session_id)}"

    @staticmethod
    def is_signed_format(value: str) -> bool:
        """Whether `value` has the shape of our cookie (`<id>.<signature>`), valid or not."""
        return len(value) < 128 and _SIGNED_RE.fullmatch(value) is not None

    def unsign(self, value: str) -> str | None:
        """Return the id if `value` is well formed and signed by one of the keys, else `None`."""
        known = self._verified.get(value)
        if known is not None:
            return known
        match = _SIGNED_RE.fullmatch(value) if len(value) < 128 else None
        if match is None:
            return None
        session_id, signature = match.groups()
        for key in self._keys:
            if hmac.compare_digest(self._signature(key, session_id), signature):
                # Every request of a session verifies the same value: remember the answer.
                # Only values that verified, so no client can fill this; and bounded.
                if len(self._verified) >= _VERIFIED_MAX:
                    self._verified.clear()
                self._verified[value] = session_id
                return session_id
        return None


class _Default(enum.Enum):
    DEFAULT = "default"


_DEFAULT: Final = _Default.DEFAULT


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """Cookie attributes, named as in Starlette's `SessionMiddleware`."""

    name: str = "session"
    max_age: int | None = DEFAULT_MAX_AGE
    path: str = "/"
    domain: str | None = None
    same_site: SameSite = "lax"
    https_only: bool = False
    # CHIPS: the browser keeps a separate cookie per top-level site (an embedded app).
    partitioned: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", self.name):
            raise ConfigurationError(f"session_cookie {self.name!r} is not a valid cookie name")
        if self.same_site not in ("lax", "strict", "none"):
            raise ConfigurationError(
                f"same_site must be 'lax', 'strict' or 'none', got {self.same_site!r}"
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
        # Browsers drop a prefixed cookie whose attributes break the prefix's rules
        # (RFC 6265bis 4.1.3): refuse at start-up rather than lose every session.
        if self.name.startswith("__Host-") and (
            not self.https_only or self.path != "/" or self.domain
        ):
            raise ConfigurationError(
                f"session_cookie {self.name!r}: a __Host- cookie needs https_only=True, "
                f"path='/' and no domain (got https_only={self.https_only!r}, "
                f"path={self.path!r}, domain={self.domain!r})"
            )
        if self.name.startswith("__Secure-") and not self.https_only:
            raise ConfigurationError(
                f"session_cookie {self.name!r}: a __Secure- cookie needs https_only=True"
            )

    # Attributes are spelt, and ordered, as Starlette's SessionMiddleware writes them
    # (names are case-insensitive to browsers): code and tests written against Starlette's
    # Set-Cookie keep working after the switch.

    def set_header(self, value: str, *, max_age: int | None | _Default = _DEFAULT) -> str:
        """The Set-Cookie header value that stores `value`, for `max_age` seconds (default:
        the configured `max_age`).

        No `Max-Age` when `max_age` is `None` (a browser-session cookie) or 0, as in
        Starlette; a negative one is sent as it is (the browser drops the cookie at once).
        """
        age = self.max_age if isinstance(max_age, _Default) else max_age
        lasts = f"; Max-Age={age}" if age else ""
        return f"{self.name}={value}; path={self.path}{lasts}{self._attributes()}"

    def clear_header(self) -> str:
        """The Set-Cookie header value that makes the browser drop the cookie."""
        expired = "; Max-Age=0; expires=Thu, 01 Jan 1970 00:00:00 GMT"
        return f"{self.name}=; path={self.path}{expired}{self._attributes()}"

    def _attributes(self) -> str:
        parts = ["; httponly", f"; samesite={self.same_site}"]
        # Browsers reject SameSite=None without Secure, so "none" implies it.
        if self.https_only or self.same_site == "none":
            parts.append("; secure")
        if self.domain:
            parts.append(f"; domain={self.domain}")
        if self.partitioned:
            parts.append("; partitioned")
        return "".join(parts)
