"""Adopting the sessions of the backend being replaced, as a wrapper around the core.

`AdoptingCore` is the core with one more step in front of its open flow: a request that
carries the old backend's cookie (see `sessionguard.legacy`) and none of ours is
adopted; every other request goes through the core's own flow untouched. `build_core`
makes one only when `legacy=` is given, so the common path never looks at it.
"""

from __future__ import annotations

from typing import Any

from .cookie import read_cookies
from .core import SessionCore, logger
from .decisions import Claim
from .errors import CorruptSessionError
from .events import EventKind
from .legacy import LegacyCookie, legacy_key
from .ops import Flow, Load, LoadLegacy, Update, Updated
from .policy import ErrorResponse
from .session import Session
from .stores.base import Record, Write

__all__ = ["AdoptingCore"]


class AdoptingCore(SessionCore):
    """A `SessionCore` that also adopts sessions of the old backend's cookie, `legacy`."""

    def __init__(self, *args: Any, legacy: LegacyCookie, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.legacy = legacy

    def _open_values(
        self, values: list[str], cookie_header: str | None, read_only: bool
    ) -> Flow[Session | ErrorResponse]:
        if not any(self.signer.unsign(value) is not None for value in values):
            legacy_id = self._legacy_id(cookie_header, values)
            if legacy_id is not None:
                return (yield from self._adopt(legacy_id, read_only))
        return (yield from super()._open_values(values, cookie_header, read_only))

    def _legacy_id(self, cookie_header: str | None, values: list[str]) -> str | None:
        """The old backend's id in this request, if it carries one and none of ours."""
        if self.legacy.name == self.cookie.name:
            # Flask-Session and sessionguard both say "session": a value that is not in our
            # signed format is the old backend's. One that is, but did not verify, is a
            # forgery of ours and never reaches any store.
            candidates = [v for v in values if not self.signer.is_signed_format(v)]
        elif values:
            return None  # a cookie of ours that did not verify: rejected, not adopted
        else:
            candidates = read_cookies(cookie_header, self.legacy.name)
        return next((i for v in candidates if (i := self.legacy.parse(v)) is not None), None)

    def _adopt(self, legacy_id: str, read_only: bool) -> Flow[Session | ErrorResponse]:
        """A request with only the old backend's cookie: carry its data into a new session.

        At most once per old id: the adoption atomically replaces the migrated record (or
        the nothing where it would be) with a marker that names the new session and lives
        as long as the old backend kept sessions (`LegacyCookie.max_age`). A concurrent or
        replayed request with the same old cookie finds the marker and starts fresh, even
        after the new session was logged out, and even with `source=`.
        """
        legacy = self.legacy
        record_id = legacy.record_id(legacy_id) if legacy.record_id else legacy_id
        key = legacy_key(legacy.name, record_id)
        record: Record | None = yield Load(self.stored_key(key))
        data, adopted = _migrated_data(self, key, record)
        if adopted:
            self._emit(EventKind.ADOPT_REFUSED, key)
            return self._legacy_session(read_only)
        if data is None and record is None and legacy.source is not None:
            found = yield LoadLegacy(legacy.source, legacy_id)
            data = dict(found) if found is not None else None
        if not data:
            return self._legacy_session(read_only)  # nothing to adopt: write nothing
        if read_only:  # a websocket cannot set cookies: show the data, adopt later over HTTP
            return self.session_class(data, read_only=True)
        session = self._legacy_session(read_only)
        now = self.clock()
        # The marker names our session by its store key, as a regenerate's pointer does.
        marker = self.stored_key(session._sg.id)
        claim = Claim(
            record.version if record is not None else None,
            Write(self.payload({}, now, moved_to=marker), now + legacy.max_age),
        )
        claimed: Updated[bool] = yield Update(self.stored_key(key), claim)
        if not claimed.found:
            # Adopted, or changed, by a concurrent request with the same old cookie.
            self._emit(EventKind.ADOPT_REFUSED, key)
            return session
        session.update(data)
        self._emit(EventKind.ADOPT, key)
        return session

    def _legacy_session(self, read_only: bool) -> Session:
        """A new session for a request that came with the old backend's cookie."""
        legacy = self.legacy
        session = self.session_class(read_only=read_only)
        if read_only:
            return session
        if (legacy.name, legacy.path, legacy.domain) == (
            self.cookie.name,
            self.cookie.path,
            self.cookie.domain,
        ):
            # The same cookie: our own Set-Cookie replaces or clears it.
            session._sg.stale_cookie = True
        else:
            session._sg.legacy_clear = legacy.clear_header()
        return session


def _migrated_data(
    core: AdoptingCore, key: str, record: Record | None
) -> tuple[dict[str, Any] | None, bool]:
    """(the data a migrated record holds, whether it is an adoption marker instead)."""
    if record is None:
        return None, False
    try:
        envelope = core.decode_record(record)
    except CorruptSessionError as exc:
        logger.warning("migrated session %s is corrupt: %s", core.name_of(key), exc.reason)
        return None, False
    if envelope.moved_to is not None:
        return None, True
    return envelope.data, False
