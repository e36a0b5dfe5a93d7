"""Regenerate: a session's data moves to a new id (at login), in one place.

`Session.regenerate()` only marks the session; the move happens when it is saved:

1. the data is saved under the new id (a plain save, that no one else can know of yet);
2. `Move` (in `sessionguard.decisions`) turns the old id into a forward pointer with a
   short deadline (`regenerate_grace`). It finds what the old id held: nothing (logged
   out meanwhile: the new copy is deleted too, logout wins), another pointer
   (regenerated concurrently: both new ids stay valid), or data;
3. with `carry_in_flight`, if that data is not what the regenerating request loaded (a
   concurrent save landed first), `Carry` merges it into the new id.

Meanwhile, and for the grace window after, other requests meet the pointer:

* an `open` with the old id never follows it: it starts a fresh session
  (`Opening._open_values`);
* a save of a request still in flight on the old id (`Committing._update`): with
  `carry_in_flight`, its `Merge` follows the pointer and merges into the new id without
  learning it or sending its cookie; without, it is refused (409, nothing written).

Invariants: the old id never leads an `open` to the new session (fixation); a logout is
never undone; the new id keeps the creation time (rotation never extends the absolute
lifetime); a pointer's deadline is never extended (`Committing._refresh` touches only
the version it read).
"""

from __future__ import annotations

from .corebase import Saved
from .decisions import CARRY_MARK, Carried, Carry, Move, Moved
from .errors import ConflictError
from .lifetimes import Lifetimes
from .ops import Delete, Flow, Save, Update, Updated
from .ownership import Ownership
from .session import Loaded, Session
from .stores.base import ABSENT

__all__ = ["Regenerating"]


class Regenerating(Lifetimes, Ownership):
    """The flow of a save after `regenerate()`."""

    def _regenerate(self, session: Session, loaded: Loaded, lifetime: float | None) -> Flow[Saved]:
        """Store the data under the new id, then turn the old id into a forward pointer.

        Both steps are atomic store updates, so a regenerate never has to retry against
        concurrent writers: the pointer replaces whatever the old id holds by then, and a
        save that landed on the old id before it is carried over to the new id.

        The new id inherits the creation time: rotating ids must not extend the absolute
        lifetime (apps that rotate every few minutes would otherwise never expire).
        """
        new_key, created_at = session._sg.id, loaded.created_at
        new_stored = self.stored_key(new_key)
        first = dict(session)
        payload = self.payload(first, created_at)
        expires_at = self.deadline(created_at, lifetime, first)
        new_version = yield Save(new_stored, payload, expires_at, ABSENT, self.owner_of(first))
        if new_version is None:  # pragma: no cover - see _create
            raise ConflictError("a freshly generated session id already exists in the store")
        now = self.clock()
        carry = session._sg.carry_in_flight
        # The pointer names the new record by its store key: with `hashed_ids`, a copy of
        # the store holds no id, not even during the grace window.
        pointer = self.payload(CARRY_MARK if carry else {}, now, moved_to=new_stored)
        # The pointer's deadline is fixed here: nothing refreshes a pointer (see _refresh).
        moved: Updated[Moved] = yield Update(
            self.stored_key(loaded.key), Move(self, pointer, now + self.regenerate_grace)
        )
        old = moved.found
        if old.gone:
            # Logged out concurrently: logout wins, the new copy goes too.
            yield Delete(new_stored)
            return Saved(self.cookie.clear_header())
        self._note_user(session)
        cookie = self.set_cookie(new_key, first)
        stored = Loaded(new_key, new_version, created_at, expires_at)
        if carry and old.data is not None and old.version != loaded.version:
            # A concurrent save landed on the old id first: carry it over, our changes on top.
            carry_over = Carry(self, session, old.data, first, created_at, lifetime)
            carried: Updated[Carried | None] = yield Update(new_stored, carry_over)
            if carried.version is None or carried.found is None:
                return Saved(cookie)  # the new session was deleted meanwhile
            stored = Loaded(new_key, carried.version, created_at, carried.found.expires_at)
            return Saved(cookie, stored, carried.found.data)
        # (If another request regenerated concurrently, both new sessions stay valid.)
        return Saved(cookie, stored)
