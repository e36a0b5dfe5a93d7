"""The core's flows over a user's sessions: list them, end them (log out everywhere).

The store lists the keys it indexes under the user (`SessionsOf`); each record is then
judged here by its own data, so a session counts as the user's only if it is live,
verifies, and holds the user under `user_key` now. Ending one is an atomic update that
deletes the record only if that is still true: a session that moved to another user (or
to no one) since it was listed is left alone. A request in flight on an ended session
finds it gone when it saves, and never brings it back (see `Committing._update`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import Envelope
from .corebase import CoreBase
from .errors import CorruptSessionError
from .events import EventKind
from .ops import Flow, Load, SessionsOf, Update, Updated, key_hash
from .stores.base import Record, Write

__all__ = ["ByUser", "UserSession"]


@dataclass(frozen=True, slots=True)
class UserSession:
    """One of a user's live sessions. `session` is a short hash of its id, never the id:
    enough to tell sessions apart and to name the one to keep, useless to a thief."""

    session: str
    created_at: float
    expires_at: float


class ByUser(CoreBase):
    """`sessions_of_user` and `revoke_user`, for `sessionguard.users.UserSessions`."""

    def sessions_of_user(self, user: str) -> Flow[list[UserSession]]:
        """Flow: the user's live sessions, oldest first."""
        keys: list[str] = yield SessionsOf(user)
        found = []
        for key in keys:
            record: Record | None = yield Load(key)
            envelope = self._owned(record, user)
            if record is not None and envelope is not None:
                found.append(UserSession(key_hash(key), envelope.created_at, record.expires_at))
        return sorted(found, key=lambda s: (s.created_at, s.session))

    def revoke_user(self, user: str, *, keep: str | None = None) -> Flow[int]:
        """Flow: end every session of the user but the one whose hash is `keep`; return
        how many were ended."""
        keys: list[str] = yield SessionsOf(user)
        ended = 0
        for key in keys:
            if key_hash(key) == keep:
                continue
            updated: Updated[bool] = yield Update(key, _Revoke(self, user))
            if updated.found:
                ended += 1
                self._emit(EventKind.REVOKED, key)
        return ended

    def _owned(self, record: Record | None, user: str) -> Envelope | None:
        """The envelope of `record` if it is a session of `user`, else `None`."""
        if record is None:
            return None
        try:
            envelope = self.decode_record(record)
        except CorruptSessionError:
            return None  # the corruption policy's business, when a request reads it
        if envelope.moved_to is not None or self.owner_of(envelope.data) != user:
            return None
        return envelope


@dataclass(frozen=True)
class _Revoke:
    """The `update` decision that ends a session if it still is the user's."""

    core: ByUser
    user: str

    def __call__(self, record: Record | None) -> tuple[Write | None, bool]:
        if self.core._owned(record, self.user) is None:
            return None, False
        return Write(None), True
