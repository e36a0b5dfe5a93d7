"""The sans-IO session logic both adapters share.

The core never touches a store. `SessionCore.open` and `SessionCore.commit` are
generator *flows*, after httpx's `Auth.auth_flow`: they yield store operations
(`sessionguard.ops`: `Load`, `Save`, ...) and receive the results, and
`sessionguard.driver` runs them with a sync or an async store. So the open -> policy ->
session -> save/touch -> Set-Cookie sequence, the compare-and-swap retry and the
changed-key merge exist exactly once.

Read it in this order: `corebase` (configuration, records, reporting), `opening` (cookie
to session), `committing` (session to store), `decisions` (what an atomic update writes).
"""

from __future__ import annotations

from collections.abc import Sequence

from .byuser import ByUser
from .committing import Committing
from .corebase import Saved, UnsignedRecords, logger
from .errors import CorruptSessionError, StoreUnavailableError
from .events import EventKind
from .opening import Opening
from .ops import Delete, Flow, Load
from .policy import ErrorResponse
from .stores.base import Record

__all__ = ["Saved", "SessionCore", "UnsignedRecords", "logger"]


class SessionCore(Opening, Committing, ByUser):
    """Session behaviour, configured once per middleware."""

    # -- one id, for integrations that expose the store (Django's `exists`, `delete`) -----

    def exists(self, value: str) -> Flow[bool | ErrorResponse]:
        """Flow: whether the cookie value `value` leads to a stored session (a forward
        pointer left by a regenerate does not; a corrupt record does, since something is
        stored there). A value that does not verify is never looked up."""
        key = self.signer.unsign(value)
        if key is None:
            return False
        try:
            record: Record | None = yield Load(self.stored_key(key))
        except StoreUnavailableError as exc:
            self._log_unavailable("load", key, exc)
            return self.policy.unavailable_response(exc)
        if record is None:
            return False
        try:
            return self.decode_record(record).moved_to is None
        except CorruptSessionError:
            return True

    def end(self, value: str) -> Flow[bool | ErrorResponse]:
        """Flow: delete the session the cookie value `value` names, whatever concurrent
        requests wrote to it (logout wins). A value that does not verify is never looked
        up. Returns whether a record was deleted."""
        key = self.signer.unsign(value)
        if key is None:
            return False
        self._emit(EventKind.INVALIDATE, key)
        try:
            deleted: bool = yield Delete(self.stored_key(key))
        except StoreUnavailableError as exc:
            self._log_unavailable("delete", key, exc)
            return self.policy.unavailable_response(exc)
        return deleted

    def response_cookies(
        self, ours: tuple[str, ...], app_set_cookies: Sequence[str]
    ) -> tuple[str, ...]:
        """The Set-Cookie values to add to a response whose app already sets
        `app_set_cookies`: ours, except that a cookie of the session's name set by the app
        itself is the app's to keep (two owners of one name is a misconfiguration)."""
        name = self.cookie.name
        if not any(value.partition("=")[0].strip() == name for value in app_set_cookies):
            return ours
        logger.error(
            "the application set a cookie named %r, the name of the session cookie: its "
            "cookie is kept and the session's is not sent. Give one of them another name "
            "(the middleware's session_cookie=...)",
            name,
            extra={"event": "cookie_clash"},
        )
        return tuple(value for value in ours if value.partition("=")[0] != name)
