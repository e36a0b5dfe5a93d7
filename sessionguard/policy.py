"""`CorruptionPolicy`: the answer to an unreadable stored session, and to a store that is down.

Two separate decisions, never mixed:

* **Corrupt record** (bytes were read and failed their check): `"reset"` (default) gives
  the request a fresh empty session under a new id and removes the bad record, or moves
  it to `quarantine_dir`; `"reject"` answers 400 with a plain body, clears the cookie and
  does not call the app. A callable may choose per event.
* **Store unavailable** (outage, full disk, read-only database) or **conflict** (too many
  concurrent writers): 503 with `Retry-After`. Never a 400, never "tampered", never a
  silently dropped session: the stored data is intact and the client should retry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .errors import ConfigurationError, ConflictError, CorruptReason, StoreUnavailableError

__all__ = ["Action", "CorruptionEvent", "CorruptionPolicy", "ErrorResponse"]

Action = Literal["reset", "reject"]


@dataclass(frozen=True, slots=True)
class CorruptionEvent:
    """A stored session that could not be read. `key_hash` names it without revealing the id."""

    reason: CorruptReason
    key_hash: str
    detail: str


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A response the middleware sends instead of calling (or answering for) the app."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class CorruptionPolicy:
    """Decides the fate of corrupt records and the answer to store outages.

    `on_corrupt` is `"reset"`, `"reject"` or a callable taking a `CorruptionEvent` and
    returning one of those. `on_event` is called for every corruption event (for alerts
    or metrics). `quarantine_dir`, when set, receives each corrupt record (under either
    policy), named `<key hash>-<reason>-<unix time>.bin`, and the record leaves the store;
    without it, "reset" deletes the record and "reject" leaves it where it is.
    """

    def __init__(
        self,
        on_corrupt: Action | Callable[[CorruptionEvent], Action] = "reset",
        *,
        quarantine_dir: str | os.PathLike[str] | None = None,
        on_event: Callable[[CorruptionEvent], None] | None = None,
        retry_after: int = 5,
        reject_body: bytes = b"Invalid session data\n",
        too_large_body: bytes = b"The session is too large to be saved; nothing was changed.\n",
        rotated_body: bytes = (
            b"The session was renewed (a login) while this request ran; its changes were "
            b"not saved. Retry the request.\n"
        ),
        unavailable_body: bytes = (
            b"Session storage is temporarily unavailable. Your session is intact; "
            b"please retry shortly.\n"
        ),
    ) -> None:
        if not callable(on_corrupt) and on_corrupt not in ("reset", "reject"):
            raise ConfigurationError(
                f"on_corrupt must be 'reset', 'reject' or a callable, got {on_corrupt!r}"
            )
        if retry_after < 0:
            raise ConfigurationError(f"retry_after must be >= 0 seconds, got {retry_after!r}")
        self.on_corrupt = on_corrupt
        self.quarantine_dir = os.fspath(quarantine_dir) if quarantine_dir is not None else None
        self.on_event = on_event
        self.retry_after = retry_after
        self.reject_body = reject_body
        self.rotated_body = rotated_body
        self.too_large_body = too_large_body
        self.unavailable_body = unavailable_body

    def decide(self, event: CorruptionEvent) -> Action:
        """Notify `on_event`, then return what to do with the corrupt record."""
        if self.on_event is not None:
            self.on_event(event)
        action = self.on_corrupt(event) if callable(self.on_corrupt) else self.on_corrupt
        if action not in ("reset", "reject"):
            raise ConfigurationError(
                f"the on_corrupt callable returned {action!r}; it must return 'reset' or 'reject'"
            )
        return action

    def reject_response(self, clear_cookie: str) -> ErrorResponse:
        return ErrorResponse(
            400,
            self.reject_body,
            (("content-type", "text/plain; charset=utf-8"), ("set-cookie", clear_cookie)),
        )

    def too_large_response(self) -> ErrorResponse:
        """The answer to a save over `max_size`: nothing was written, the old data stands."""
        return ErrorResponse(
            413,
            self.too_large_body,
            (("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")),
        )

    def rotated_response(self) -> ErrorResponse:
        """The answer to a save that lost to a login: the session it read was regenerated
        while it ran, so its changes were not saved; sets no cookie (the browser already
        has the new one)."""
        return ErrorResponse(
            409,
            self.rotated_body,
            (("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")),
        )

    def unavailable_response(self, exc: StoreUnavailableError | ConflictError) -> ErrorResponse:
        """The answer to an outage or an exhausted compare-and-swap: retry later, data intact."""
        return ErrorResponse(
            503,
            self.unavailable_body,
            (
                ("content-type", "text/plain; charset=utf-8"),
                ("retry-after", str(self.retry_after)),
                ("cache-control", "no-store"),
            ),
        )
