"""What happens to sessions, as events an app can subscribe to: metrics, alerts, audit.

A hook is any callable taking an `Event`. Pass hooks to the middleware
(`hooks=[metrics, alert]`); `sessionguard.metrics.Metrics` counts them and
`sessionguard.prometheus.PrometheusMetrics` exports them. Events name a session only by
a short hash of its id, never the id itself, so they are safe to log.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Event", "EventBus", "EventKind", "Hook"]

logger = logging.getLogger("sessionguard")


class EventKind(enum.StrEnum):
    # One per store operation, with its duration.
    LOAD = "load"
    SAVE = "save"
    UPDATE = "update"  # a merging save: read-merge-write in one atomic store step
    DELETE = "delete"
    TOUCH = "touch"
    # What the core decided.
    CREATED = "created"  # a new session was stored for the first time (its cookie sent)
    USER_BOUND = "user_bound"  # a save set the session's user (`user_key`): a login
    REVOKED = "revoked"  # ended by `UserSessions.revoke` (log out everywhere)
    CORRUPT = "corrupt"  # reason: the CorruptReason
    MERGE = "merge"  # a save applied its changes on top of a concurrent request's save
    CONFLICT = "conflict"  # concurrent writers kept winning: answered 503
    STORE_ERROR = "store_error"  # the store was unavailable: answered 503
    # reason: "absolute" lifetime, "missing" (idle expiry or deleted), or "purged"
    # (`sessionguard.purging.purge_expired` removed it)
    EXPIRED = "expired"
    REGENERATE = "regenerate"
    # A save by a request that loaded the session before a regenerate() that did not
    # carry in-flight writes: refused with 409, nothing written.
    ROTATED = "rotated"
    INVALIDATE = "invalidate"
    REJECTED_COOKIE = "rejected_cookie"  # bad format or signature: never looked up
    TOO_LARGE = "too_large"  # a save over max_size: answered 413, nothing written
    ADOPT = "adopt"  # a session of the replaced backend became a sessionguard session
    ADOPT_REFUSED = "adopt_refused"  # its old id was adopted before (a replay, or concurrent)


#: Store operations, for latency histograms.
STORE_OPERATIONS = frozenset(
    {EventKind.LOAD, EventKind.SAVE, EventKind.UPDATE, EventKind.DELETE, EventKind.TOUCH}
)


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    session: str | None = None  # short hash of the session id (see `ops.key_hash`)
    reason: str | None = None
    duration: float | None = None  # seconds, for store operations


Hook = Callable[[Event], None]


class EventBus:
    """Delivers events to the hooks; a failing hook is logged and never fails the request."""

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        self.hooks = tuple(hooks)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def emit(self, event: Event) -> None:
        for hook in self.hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("session event hook %r failed on %s", hook, event.kind)
