"""The core's committing flows: from what a request did to its session, to the store and
the Set-Cookie header.

One of five ways, chosen by `_commit`: a logout (`invalidate()`) deletes unconditionally;
a regenerate moves the data to a new id (the protocol is in `sessionguard.regenerating`); a
new session is created; a changed one is merged into the newest stored data; an
unchanged one only has its deadline moved, at most about once a minute.
"""

from __future__ import annotations

from .corebase import Saved, logger
from .decisions import Merge, Merged
from .errors import ConflictError, SessionTooLargeError, StoreUnavailableError
from .events import EventKind
from .ops import Delete, Flow, Save, Touch, Update, Updated
from .policy import ErrorResponse
from .regenerating import Regenerating
from .session import Loaded, Session
from .stores.base import ABSENT

__all__ = ["Committing"]


class Committing(Regenerating):
    """`commit` and `save`: what the request did, to the store and the Set-Cookie header."""

    def commit(self, session: Session) -> Flow[tuple[str, ...] | ErrorResponse]:
        """Flow: persist what the request changed; return the Set-Cookie values to send.

        Returns an `ErrorResponse` (503) when the store is unavailable or concurrent
        writers kept winning; the stored data is then as it was.

        A websocket's session (`read_only`: no cookie can be sent) is saved only if it was
        stored before: a new one would be unreachable without its cookie, so it is
        dropped, with a debug line. Nothing is returned for it.
        """
        if session.read_only and session._sg.loaded is None:
            if session.modified:
                logger.debug("a new session changed over a websocket was not saved (no cookie)")
            return ()
        saved = yield from self.save(session)
        if isinstance(saved, ErrorResponse):
            return saved
        if session.read_only:
            return ()  # saved server-side; a websocket cannot carry a cookie
        cookies = (saved.cookie,) if saved.cookie is not None else ()
        return (*cookies, session._sg.legacy_clear) if session._sg.legacy_clear else cookies

    def save(
        self, session: Session, *, lifetime: float | None = None
    ) -> Flow[Saved | ErrorResponse]:
        """Flow: persist what the request changed; return where the session now is.

        `commit` for an integration that saves more than once in a request (Django's
        `save()` and `cycle_key()`): the `Saved` result says which record now holds the
        session, so the next save compares against it. `lifetime`, in seconds from now,
        replaces the idle timeout for this save (Django's `set_expiry()`); zero or less
        stores the record already expired. Returns an `ErrorResponse` as `commit` does.
        """
        try:
            return (yield from self._commit(session, lifetime))
        except (StoreUnavailableError, ConflictError) as exc:
            self._log_unavailable("save", session._sg.id, exc)
            return self.policy.unavailable_response(exc)
        except SessionTooLargeError as exc:
            name = self.name_of(session._sg.id)
            logger.warning(
                "session %s not saved: %s",
                name,
                exc,
                extra={"event": EventKind.TOO_LARGE, "session": name},
            )
            self._emit(EventKind.TOO_LARGE, session._sg.id)
            return self.policy.too_large_response()
        except _Rotated:
            loaded = session._sg.loaded
            logger.info(
                "save refused: session %s was regenerated while this request ran",
                self.name_of(loaded.key) if loaded else "-",
                extra={"event": EventKind.ROTATED},
            )
            self._emit(EventKind.ROTATED, loaded.key if loaded else None)
            return self.policy.rotated_response()

    def _commit(self, session: Session, lifetime: float | None) -> Flow[Saved]:
        self._note_device(session)
        loaded = session._sg.loaded
        if session._sg.invalidated and loaded is not None:
            self._emit(EventKind.INVALIDATE, loaded.key)
            yield Delete(self.stored_key(loaded.key))  # unconditional: logout wins
        if session._sg.regenerated and loaded is not None:
            self._emit(EventKind.REGENERATE, loaded.key)
            return (yield from self._regenerate(session, loaded, lifetime))
        if loaded is None or session._sg.invalidated:
            return (yield from self._create(session, lifetime))
        if session.modified:
            return (yield from self._update(session, loaded, lifetime))
        return (yield from self._refresh(session, loaded, lifetime))

    def _create(self, session: Session, lifetime: float | None) -> Flow[Saved]:
        if not session and not self.keep_empty:
            stale = session._sg.stale_cookie or session._sg.invalidated
            return Saved(self.cookie.clear_header() if stale else None)
        now = self.clock()
        data = dict(session)
        payload = self.payload(data, now)
        expires_at = self.deadline(now, lifetime, data)
        stored_key = self.stored_key(session._sg.id)
        version = yield Save(stored_key, payload, expires_at, ABSENT, self.owner_of(data))
        if version is None:  # pragma: no cover - a 160-bit random id that already exists
            raise ConflictError("a freshly generated session id already exists in the store")
        self._emit(EventKind.CREATED, session._sg.id)
        self._note_user(session)
        stored = Loaded(session._sg.id, version, now, expires_at)
        return Saved(self.set_cookie(session._sg.id, data), stored)

    def _refresh(self, session: Session, loaded: Loaded, lifetime: float | None) -> Flow[Saved]:
        """Slide the idle deadline of a session this request only read."""
        expires_at = self.deadline(loaded.created_at, lifetime, session)
        # Skip the write unless it moves the deadline noticeably (at most once a minute).
        if not self.save_every_request and expires_at - loaded.expires_at < min(
            60, self.idle_timeout / 100
        ):
            return Saved(None, loaded)
        # Only the record this request read: if the id was regenerated meanwhile, it now
        # holds a forward pointer whose short lifetime must not be extended, and the
        # browser already has the new cookie, which this response must not replace.
        touched = yield Touch(self.stored_key(loaded.key), expires_at, loaded.version)
        if not touched:
            # Gone, or no longer the record this request read: whatever holds the id now
            # is another request's doing, and nothing of it is known here.
            return Saved(None)
        stored = Loaded(loaded.key, loaded.version, loaded.created_at, expires_at)
        return Saved(self.set_cookie(loaded.key, session), stored)

    def _update(self, session: Session, loaded: Loaded, lifetime: float | None) -> Flow[Saved]:
        """Save this request's changes without losing a concurrent request's.

        One atomic `update` of the record: if it is still the version this request loaded
        (the common case), the store writes this request's data as it is; if another
        request saved in between, `_Merge` applies exactly this request's set and deleted
        keys to the newest record instead. A regenerate pointer met on the way is followed:
        it names the new record by its store key, never by the id, which this request must
        not learn.
        """
        if not self.merge:
            return (yield from self._overwrite(session, loaded, lifetime))
        own = target = self.stored_key(loaded.key)
        for _ in range(self.max_attempts):  # bounds the pointers followed
            # Versions are only comparable within one key: after following a pointer, the
            # new id's version may equal the old one's by chance (per-key counters).
            followed = target != own
            expected = None if followed else loaded.version
            merge = Merge(self, session, loaded.created_at, lifetime, expected)
            updated: Updated[Merged] = yield Update(target, merge)
            version, merged = updated.version, updated.found
            if merged.data is not None:
                self._emit_stored(EventKind.MERGE, target)
            if merged.rotated:
                raise _Rotated
            if version is not None:
                if merged.emptied:
                    return Saved(None if followed else self.cookie.clear_header())
                self._note_user(session)
                if followed:
                    # Merged into the regenerated session; its cookie is already out, and
                    # must never be sent to a request that came with the old id (`stored`
                    # names the new record by its store key: the id is not known here).
                    stored = Loaded(target, version, merged.created_at, merged.expires_at)
                    return Saved(None, stored, merged.data, forwarded=True)
                stored = Loaded(loaded.key, version, merged.created_at, merged.expires_at)
                data = session if merged.data is None else merged.data
                return Saved(self.set_cookie(loaded.key, data), stored, merged.data)
            if merged.moved_to is None:
                # Deleted meanwhile (logout, expiry): never bring it back.
                return Saved(None if followed else self.cookie.clear_header())
            target = merged.moved_to
        raise ConflictError(
            f"gave up saving session {self.name_of(loaded.key)}: it was regenerated "
            f"{self.max_attempts} times while this request ran"
        )

    def _overwrite(self, session: Session, loaded: Loaded, lifetime: float | None) -> Flow[Saved]:
        """`merge=False`: the last writer wins, as in most session libraries (a baseline)."""
        stored_key = self.stored_key(loaded.key)
        if not session and not self.keep_empty:
            yield Delete(stored_key)
            return Saved(self.cookie.clear_header())
        data = dict(session)
        payload = self.payload(data, loaded.created_at)
        expires_at = self.deadline(loaded.created_at, lifetime, data)
        version = yield Save(stored_key, payload, expires_at, None, self.owner_of(data))
        self._note_user(session)
        stored = Loaded(loaded.key, version, loaded.created_at, expires_at)
        return Saved(self.set_cookie(loaded.key, data), stored)


class _Rotated(Exception):
    """A save met a forward pointer that does not carry in-flight writes: refuse it."""
