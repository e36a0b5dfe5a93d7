"""The keyword options both middlewares accept, and the one place their defaults live."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, TypedDict, Unpack

from .adoption import AdoptingCore
from .codec import Cipher, Serializer
from .cookie import DEFAULT_MAX_AGE, CookieSettings, SameSite, SecretKey
from .core import SessionCore, UnsignedRecords
from .errors import ConfigurationError
from .events import Hook
from .hashedids import HashedIds
from .legacy import LegacyCookie
from .policy import CorruptionPolicy

__all__ = ["require_user_index", "SessionOptions", "build_core"]


class SessionOptions(TypedDict, total=False):
    """Keyword options both middlewares accept; the first seven mean what they mean in Starlette."""

    session_cookie: str
    max_age: int | None
    path: str
    same_site: SameSite
    https_only: bool
    domain: str | None
    partitioned: bool
    policy: CorruptionPolicy
    idle_timeout: int | None
    absolute_timeout: int
    save_every_request: bool
    serializer: Serializer
    merge: bool
    hooks: Sequence[Hook]
    legacy: LegacyCookie | None
    max_size: int
    unsigned_records: UnsignedRecords
    user_key: str | None
    cipher: Cipher | None
    record_devices: bool
    hashed_ids: HashedIds | None


def build_core(secret_key: SecretKey, **options: Unpack[SessionOptions]) -> SessionCore:
    """Build the core from the middleware's keyword options, applying the defaults once.

    An unknown option is an error: a misspelt `htps_only` must not start a site that
    sends its session cookie without `Secure`.
    """
    unknown = sorted(set(options) - set(SessionOptions.__annotations__))
    if unknown:
        known = sorted(SessionOptions.__annotations__)
        hints = [
            f"{name!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(name, known, n=1))
            else repr(name)
            for name in unknown
        ]
        raise ConfigurationError(
            f"unknown SessionMiddleware option {', '.join(hints)}; the options are: "
            f"{', '.join(known)}"
        )
    cookie = CookieSettings(
        name=options.get("session_cookie", "session"),
        max_age=options.get("max_age", DEFAULT_MAX_AGE),
        path=options.get("path", "/"),
        domain=options.get("domain"),
        same_site=options.get("same_site", "lax"),
        https_only=options.get("https_only", False),
        partitioned=options.get("partitioned", False),
    )
    legacy = options.get("legacy")
    # Adoption wraps the core only when asked for: the common path never looks at it.
    extra: dict[str, Any] = {"legacy": legacy} if legacy is not None else {}
    core_class = AdoptingCore if legacy is not None else SessionCore
    return core_class(
        secret_key,
        cookie=cookie,
        policy=options.get("policy") or CorruptionPolicy(),
        idle_timeout=options.get("idle_timeout"),
        # 30 days, but never shorter than the cookie's own lifetime: a Starlette user with
        # max_age of 90 days must not find sessions ending after 30.
        absolute_timeout=options.get(
            "absolute_timeout", max(30 * 24 * 60 * 60, cookie.max_age or 0)
        ),
        save_every_request=options.get("save_every_request", False),
        serializer=options.get("serializer", "msgpack"),
        merge=options.get("merge", True),
        hooks=options.get("hooks", ()),
        **extra,
        max_size=options.get("max_size", 64 * 1024),
        unsigned_records=options.get("unsigned_records", "accept"),
        user_key=options.get("user_key"),
        cipher=options.get("cipher"),
        record_devices=options.get("record_devices", False),
        hashed_ids=options.get("hashed_ids"),
    )


def require_user_index(core: SessionCore, store: object) -> None:
    """`ConfigurationError` unless `store` can keep the per-user index `user_key` asks for."""
    if core.user_key is not None and not getattr(store, "indexes_users", False):
        raise ConfigurationError(
            f"user_key={core.user_key!r} needs a store that keeps a per-user index of "
            f"sessions, and {store!r} keeps none: use one of sessionguard's stores "
            "(MemoryStore, FileStore, RedisStore, SQLStore), or leave user_key unset"
        )
