"""Whom a session belongs to, and on which device: what a save notes for the store's
per-user index (`user_key`) and for `UserSessions` (`record_devices`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .corebase import CoreBase
from .events import EventKind
from .session import DEVICE_KEY, Session
from .stores.base import KEEP, Owner

__all__ = ["Ownership"]


class Ownership(CoreBase):
    """`owner_of`, and the notes a save takes of its user and device."""

    def owner_of(self, data: Mapping[str, Any]) -> Owner:
        """Who a record holding `data` belongs to in the store's per-user index: the
        value under `user_key` as a string (a str or an int, as Django and Flask-Login
        store it; its keyed hash with `hashed_ids`), `None` for no one, `KEEP` when
        this core keeps no index."""
        if self.user_key is None:
            return KEEP
        value = data.get(self.user_key)
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return self.indexed_user(str(value))
        return None

    def _note_device(self, session: Session) -> None:
        """Note the request's device in a session that is about to be stored anyway: a
        new one, or one a user just logged in on."""
        device = session._sg.device
        if not self.record_devices or not device:
            return
        creating = session._sg.loaded is None or session._sg.invalidated
        logging_in = self.user_key is not None and self.user_key in session._sg.set_keys
        if not ((creating and session) or logging_in):
            return
        noted = session.get(DEVICE_KEY)
        label = noted.get("label") if isinstance(noted, dict) else None
        current = {**device, "label": label} if isinstance(label, str) else dict(device)
        if noted != current:
            session[DEVICE_KEY] = current

    def _note_user(self, session: Session) -> None:
        """A save that set the user (a login) binds the session to them: say so."""
        if self.user_key is not None and self.user_key in session._sg.set_keys:
            if isinstance(self.owner_of(session), str):
                self._emit(EventKind.USER_BOUND, session._sg.id)
