"""`Session`: the dict-like object handlers see, tracking exactly which keys they changed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .cookie import new_id
from .values import check_storable

__all__ = [
    "DEVICE_KEY",
    "EXPIRY_KEY",
    "Loaded",
    "Session",
    "Tracking",
    "apply_changes",
    "saved_as",
]

#: The session key where `remember_me` and `set_lifetime` keep this session's own expiry
#: (as Django keeps `set_expiry`'s in `_session_expiry`, and Flask `permanent` in
#: `_permanent`): a key like any other, so concurrent requests merge it like any other.
EXPIRY_KEY = "_sessionguard_expiry"
#: Where the device a session was created or logged in on is noted (`record_devices=True`)
#: with the app's label for it (`label_device`): user agent, client network, label.
DEVICE_KEY = "_sessionguard_device"


@dataclass(frozen=True, slots=True)
class Loaded:
    """Where a session came from: the stored record it was read from."""

    key: str
    version: int
    created_at: float
    expires_at: float


@dataclass(slots=True)
class Tracking:
    """The core's bookkeeping of one request's session: where it came from and what the
    request did to it. Not the app's business: it lives in `Session._sg`, and only
    sessionguard's own modules read or change it."""

    id: str
    loaded: Loaded | None
    # Over a websocket: changes are saved server-side, but no cookie can be sent, so
    # nothing that needs one (regenerate, invalidate) is possible.
    read_only: bool
    set_keys: set[str] = field(default_factory=set)
    deleted_keys: set[str] = field(default_factory=set)
    regenerated: bool = False
    carry_in_flight: bool = False
    invalidated: bool = False
    # The request carried a cookie that leads nowhere (bad signature, expired, reset):
    # clear it unless this session ends up saved under a new id.
    stale_cookie: bool = False
    # Adopted from another backend's cookie: the Set-Cookie that clears that cookie.
    legacy_clear: str | None = None
    # The request's device (truncated user agent, client network), when the middleware
    # records devices: noted in the session when it is created or logged in.
    device: dict[str, str] | None = None


class Session(dict[str, Any]):
    """A session's data: a real `dict` (`request.session["user"] = 42`, `json.dumps`,
    `isinstance(session, dict)` all work), that records the keys this request set and
    deleted, through every mutating method, so a save can apply exactly that change on
    top of whatever concurrent requests stored meanwhile.

    Changing a value in place (`session["cart"].append(x)`) is not seen: assign it again,
    or set `session.modified = True` to mark every key as changed. `accessed` is set by
    `mark_accessed()` (Starlette's `request.session` calls it) and by every change; the
    middleware then adds `Vary: Cookie` to the response, as Starlette's does.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        loaded: Loaded | None = None,
        read_only: bool = False,
    ) -> None:
        super().__init__(data or {})
        self._sg = Tracking(loaded.key if loaded else new_id(), loaded, read_only)
        self.accessed = False

    @property
    def is_new(self) -> bool:
        """True when no stored record backs this session (yet)."""
        return self._sg.loaded is None

    @property
    def read_only(self) -> bool:
        """True over a websocket: changes are saved, but nothing that needs a cookie."""
        return self._sg.read_only

    @property
    def modified(self) -> bool:
        sg = self._sg
        return bool(sg.set_keys or sg.deleted_keys) or sg.regenerated

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            self.accessed = True
            self._sg.set_keys.update(self)
        else:
            self._sg.set_keys.clear()
            self._sg.deleted_keys.clear()

    def mark_accessed(self) -> None:
        """Note that the app looked at the session (the response then varies by cookie)."""
        self.accessed = True

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
        self._needs_cookie("regenerate()")
        self.accessed = True
        sg = self._sg
        sg.id = new_id()
        # After invalidate() this already is a new session under a fresh id: there is no
        # old id left to point from, so it is saved as a plain new session.
        if not sg.invalidated:
            sg.regenerated = True
            sg.carry_in_flight = carry_in_flight

    def remember_me(self, remember: bool = True) -> None:
        """Send a persistent cookie (`True`, the default) or one that ends when the browser
        closes (`False`: "remember me" left unticked). The server-side deadlines are the
        same either way."""
        if not isinstance(remember, bool):
            raise TypeError(f"remember_me takes True or False, got {remember!r}")
        self._set_expiry(persistent=remember)

    def set_lifetime(self, idle: int | None = None, *, absolute: int | None = None) -> None:
        """This session's own idle and absolute lifetimes in seconds, never longer than the
        middleware's (`idle_timeout`, `absolute_timeout`); `None` keeps the middleware's.
        A persistent cookie then lasts `idle` too."""
        for name, value in (("idle", idle), ("absolute", absolute)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value <= 0
            ):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self._set_expiry(idle=idle, absolute=absolute)

    def _set_expiry(self, **changes: bool | int | None) -> None:
        self._needs_cookie("remember_me() and set_lifetime()")
        chosen = self.get(EXPIRY_KEY)
        self[EXPIRY_KEY] = {**(chosen if isinstance(chosen, dict) else {}), **changes}

    def label_device(self, label: str) -> None:
        """Name the device this session is used on ("Work laptop"), for the user's list
        of sessions (`sessionguard.users`). At most 100 characters are kept."""
        if not isinstance(label, str):
            raise TypeError(f"a device label is a str, got {type(label).__name__}")
        noted = self.get(DEVICE_KEY)
        self[DEVICE_KEY] = {**(noted if isinstance(noted, dict) else {}), "label": label[:100]}

    def invalidate(self) -> None:
        """Delete the session from the store and clear the cookie (logout).

        Keys set afterwards (a "you have been logged out" message) start a new session
        under a new id; nothing of the old one is carried over.
        """
        self._needs_cookie("invalidate()")
        self.accessed = True
        super().clear()
        sg = self._sg
        sg.set_keys.clear()
        sg.deleted_keys.clear()
        sg.regenerated = False
        sg.invalidated = True
        sg.id = new_id()

    def _needs_cookie(self, what: str) -> None:
        if self._sg.read_only:
            raise TypeError(
                f"{what} needs a Set-Cookie, which a websocket connection cannot send; call "
                "it in an HTTP request instead"
            )

    # -- every way a dict can change, each recording what it changed ----------------------

    def _note_set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, got {type(key).__name__}: {key!r}")
        # Here, in the view that assigned it, rather than as a 500 once the view returned.
        check_storable(key, value)
        self.accessed = True
        self._sg.set_keys.add(key)
        self._sg.deleted_keys.discard(key)

    def _note_deleted(self, key: str) -> None:
        self.accessed = True
        self._sg.deleted_keys.add(key)
        self._sg.set_keys.discard(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._note_set(key, value)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._note_deleted(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return super().__getitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            value = super().pop(key)
            self._note_deleted(key)
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self._note_deleted(key)
        return key, value

    def clear(self) -> None:
        for key in list(self):
            self._note_deleted(key)
        super().clear()
        self.accessed = True

    def __repr__(self) -> str:
        state = "new" if self.is_new else "loaded"
        return f"<Session {state} keys={sorted(self)!r}>"


def apply_changes(session: Session, base: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with the set and deleted keys of `session`'s request applied: the
    merge rule."""
    merged = dict(base)
    for key in session._sg.deleted_keys:
        merged.pop(key, None)
    for key in session._sg.set_keys:
        merged[key] = dict.__getitem__(session, key)
    return merged


def saved_as(session: Session, stored: Loaded, data: Mapping[str, Any] | None = None) -> None:
    """`session` was just saved as `stored` (holding `data`, when a merge made it differ):
    later changes in this request count from there. For integrations that save more than
    once per request (Django's `save()`)."""
    if data is not None:
        dict.clear(session)
        dict.update(session, data)
    sg = session._sg
    sg.loaded = stored
    sg.id = stored.key
    sg.set_keys.clear()
    sg.deleted_keys.clear()
    sg.regenerated = sg.invalidated = sg.stale_cookie = False
