"""`Session`: the dict-like object handlers see, tracking exactly which keys they changed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from .cookie import new_id

__all__ = ["Loaded", "Session"]


@dataclass(frozen=True, slots=True)
class Loaded:
    """Where a session came from: the stored record it was read from."""

    key: str
    version: int
    created_at: float
    expires_at: float


class Session(MutableMapping[str, Any]):
    """A session's data, used like a dict (`request.session["user"] = 42`).

    It records the keys this request set and deleted, so a save can apply exactly that
    change on top of whatever concurrent requests stored meanwhile. Changing a value in
    place (`session["cart"].append(x)`) is not seen: assign it again, or set
    `session.modified = True` to mark every key as changed.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        loaded: Loaded | None = None,
        read_only: bool = False,
    ) -> None:
        self._data: dict[str, Any] = dict(data or {})
        self.loaded = loaded
        self.id = loaded.key if loaded else new_id()
        self.read_only = read_only
        self.set_keys: set[str] = set()
        self.deleted_keys: set[str] = set()
        self.regenerated = False
        self.carry_in_flight = False
        self.invalidated = False
        # The request carried a cookie that leads nowhere (bad signature, expired, reset):
        # clear it unless this session ends up saved under a new id.
        self.stale_cookie = False
        # Adopted from another backend's cookie: the Set-Cookie that clears that cookie.
        self.legacy_clear: str | None = None

    @property
    def is_new(self) -> bool:
        """True when no stored record backs this session (yet)."""
        return self.loaded is None

    @property
    def modified(self) -> bool:
        return bool(self.set_keys or self.deleted_keys) or self.regenerated

    @modified.setter
    def modified(self, value: bool) -> None:
        self._check_writable()
        if value:
            self.set_keys.update(self._data)
        else:
            self.set_keys.clear()
            self.deleted_keys.clear()

    def regenerate(self, *, carry_in_flight: bool = False) -> None:
        """Move this session's data to a new id; call it at login to defeat session fixation.

        The new session holds what this request read and changed. By default nothing
        else can reach it: a request still in flight on the old id that tries to save
        afterwards is refused (409, nothing written), and changes other requests saved
        on the old id while this one ran are not carried over. Whoever held the old id
        (an attacker who fixated it, say) can never write into the logged-in session.

        `carry_in_flight=True` lets the old id forward, for a short grace window, the
        changes of requests in flight on it into the new session. Only do that where the
        old id cannot have been planted by someone else (a `__Host-` cookie, no sibling
        subdomains you do not control): those requests cannot be told apart from the
        user's own.
        """
        self._check_writable()
        self.id = new_id()
        # After invalidate() this already is a new session under a fresh id: there is no
        # old id left to point from, so it is saved as a plain new session.
        if not self.invalidated:
            self.regenerated = True
            self.carry_in_flight = carry_in_flight

    def invalidate(self) -> None:
        """Delete the session from the store and clear the cookie (logout).

        Keys set afterwards (a "you have been logged out" message) start a new session
        under a new id; nothing of the old one is carried over.
        """
        self._check_writable()
        self._data.clear()
        self.set_keys.clear()
        self.deleted_keys.clear()
        self.regenerated = False
        self.invalidated = True
        self.id = new_id()

    def _check_writable(self) -> None:
        if self.read_only:
            raise TypeError(
                "this session is read-only (websocket connections cannot send a Set-Cookie); "
                "change the session in an HTTP request instead"
            )

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_writable()
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, got {type(key).__name__}: {key!r}")
        self._data[key] = value
        self.set_keys.add(key)
        self.deleted_keys.discard(key)

    def __delitem__(self, key: str) -> None:
        self._check_writable()
        del self._data[key]
        self.deleted_keys.add(key)
        self.set_keys.discard(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        state = "new" if self.is_new else "loaded"
        return f"<Session {state} keys={sorted(self._data)!r}>"

    def apply_changes(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """Return `base` with this request's set and deleted keys applied: the merge rule."""
        merged = dict(base)
        for key in self.deleted_keys:
            merged.pop(key, None)
        for key in self.set_keys:
            merged[key] = self._data[key]
        return merged
