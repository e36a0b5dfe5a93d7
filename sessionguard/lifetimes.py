"""A session's lifetimes: the middleware's, or shorter ones the session chose.

`Session.set_lifetime` and `remember_me` keep the session's choice under its own key
(`EXPIRY_KEY`); every save, refresh and regenerate reads it here to set the record's
deadline and the cookie's `Max-Age`, and `open` to apply its absolute lifetime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .corebase import CoreBase
from .session import EXPIRY_KEY

__all__ = ["Expiry", "Lifetimes"]


@dataclass(frozen=True, slots=True)
class Expiry:
    """A session's lifetimes (see `Lifetimes.expiry_of`)."""

    persistent: bool  # a cookie with Max-Age, or one that ends with the browser
    idle: float
    absolute: float | None
    chosen_idle: int | None  # the session's own idle timeout, if it set one


def _seconds(value: object) -> int | None:
    """A positive whole number of seconds from stored data, else `None` (not chosen)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


class Lifetimes(CoreBase):
    """`expiry_of`, `deadline` and `set_cookie`, for the flows that store sessions."""

    def expiry_of(self, data: Mapping[str, Any] | None) -> Expiry:
        """The lifetimes of a session holding `data`: the middleware's, or shorter ones
        the session chose (`Session.set_lifetime`, `remember_me`)."""
        chosen = data.get(EXPIRY_KEY) if data else None
        if not isinstance(chosen, dict):
            return Expiry(True, self.idle_timeout, self.absolute_timeout, None)
        idle, absolute = _seconds(chosen.get("idle")), _seconds(chosen.get("absolute"))
        if absolute is not None and self.absolute_timeout is not None:
            absolute = min(absolute, self.absolute_timeout)
        return Expiry(
            chosen.get("persistent") is not False,
            self.idle_timeout if idle is None else min(idle, self.idle_timeout),
            self.absolute_timeout if absolute is None else absolute,
            idle,
        )

    def deadline(
        self, created_at: float, lifetime: float | None, data: Mapping[str, Any] | None = None
    ) -> float:
        """The deadline of a record of `data` written now: `lifetime` (else the session's
        idle timeout) from now, but never past its absolute timeout."""
        idle: float
        absolute: float | None
        if data is None or EXPIRY_KEY not in data:  # the common case, on every refresh
            idle, absolute = self.idle_timeout, self.absolute_timeout
        else:
            expiry = self.expiry_of(data)
            idle, absolute = expiry.idle, expiry.absolute
        deadline = self.clock() + (idle if lifetime is None else lifetime)
        if absolute is None:
            return deadline
        return min(deadline, created_at + absolute)

    def set_cookie(self, key: str, data: Mapping[str, Any] | None) -> str:
        """The Set-Cookie header of the session `key` holding `data`: a browser-session
        cookie if it chose so, else one that lasts as long as its idle timeout."""
        expiry = self.expiry_of(data)
        value = self.signer.sign(key)
        if not expiry.persistent:
            return self.cookie.set_header(value, max_age=None)
        if expiry.chosen_idle is not None:
            idle = int(expiry.idle)
            return self.cookie.set_header(value, max_age=min(self.cookie.max_age or idle, idle))
        return self.cookie.set_header(value)
