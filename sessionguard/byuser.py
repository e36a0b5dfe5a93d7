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
from .errors import CorruptSessionError
from .events import EventKind
from .lifetimes import Lifetimes
from .ops import Flow, Load, SessionsOf, Update, Updated, key_hash
from .ownership import Ownership
from .session import DEVICE_KEY
from .stores.base import Record, Write

__all__ = ["ByUser", "UserSession"]


@dataclass(frozen=True, slots=True)
class UserSession:
    """One of a user's live sessions. `session` is a short hash of its id, never the id:
    enough to tell sessions apart and to name the one to keep, useless to a thief.

    `last_seen` is when a request last saved or refreshed it (refreshes come at most about
    once a minute, so it is that precise). The device fields are set when the middleware
    records devices (`record_devices=True`) or the app labelled it (`label_device`).
    """

    session: str
    created_at: float
    expires_at: float
    last_seen: float = 0.0
    user_agent: str | None = None
    network: str | None = None
    label: str | None = None


class ByUser(Lifetimes, Ownership):
    """`sessions_of_user` and `revoke_user`, for `sessionguard.users.UserSessions`."""

    def sessions_of_user(self, user: str) -> Flow[list[UserSession]]:
        """Flow: the user's live sessions, oldest first."""
        keys: list[str] = yield SessionsOf(self.indexed_user(user))
        found = []
        for key in keys:
            record: Record | None = yield Load(key)
            envelope = self._owned(record, user)
            if record is not None and envelope is not None:
                found.append(self._shown(key, envelope, record.expires_at))
        return sorted(found, key=lambda s: (s.created_at, s.session))

    def revoke_user(
        self, user: str, *, keep: str | None = None, only: str | None = None
    ) -> Flow[int]:
        """Flow: end every session of the user but the one whose hash is `keep` (or only
        the one whose hash is `only`); return how many were ended."""
        keys: list[str] = yield SessionsOf(self.indexed_user(user))
        ended = 0
        for key in keys:
            hashed = key_hash(key)
            if hashed == keep or (only is not None and hashed != only):
                continue
            updated: Updated[bool] = yield Update(key, _Revoke(self, user))
            if updated.found:
                ended += 1
                self._emit_stored(EventKind.REVOKED, key)
        return ended

    def _shown(self, key: str, envelope: Envelope, expires_at: float) -> UserSession:
        data = envelope.data
        # The deadline was set an idle timeout after the last save or refresh (unless the
        # absolute lifetime cut it short, when the last one is not known more closely).
        seen = max(envelope.created_at, expires_at - self.expiry_of(data).idle)
        device = data.get(DEVICE_KEY)
        noted = device if isinstance(device, dict) else {}

        def text(name: str) -> str | None:
            value = noted.get(name)
            return value if isinstance(value, str) else None

        return UserSession(
            key_hash(key),
            envelope.created_at,
            expires_at,
            min(seen, self.clock()),
            text("user_agent"),
            text("network"),
            text("label"),
        )

    def _owned(self, record: Record | None, user: str) -> Envelope | None:
        """The envelope of `record` if it is a session of `user`, else `None`."""
        if record is None:
            return None
        try:
            envelope = self.decode_record(record)
        except CorruptSessionError:
            return None  # the corruption policy's business, when a request reads it
        if envelope.moved_to is not None or self.owner_of(envelope.data) != self.indexed_user(user):
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
