"""`flask.session` as a sessionguard session: changed-key merge, the corruption policy, 503
on an outage, signed server-side records, for Flask, Flask-Login, `flash()` and CSRF.

```python
from sessionguard import FileStore
from sessionguard.flask import SessionInterface

app.session_interface = SessionInterface(store=FileStore("sessions"))
```

Flask's configuration means what it means for Flask's own cookie session: `SECRET_KEY`
and `SECRET_KEY_FALLBACKS` (they sign the cookie, which holds only the session id, and
the records), `SESSION_COOKIE_NAME`, `_DOMAIN`, `_PATH` (or `APPLICATION_ROOT`),
`_HTTPONLY`, `_SECURE`, `_SAMESITE`, `_PARTITIONED`, `PERMANENT_SESSION_LIFETIME` (the
cookie's lifetime for a permanent session, and the server-side idle timeout for every
session) and `SESSION_REFRESH_EACH_REQUEST`. The Set-Cookie header is written by Flask's
own machinery (Werkzeug's `set_cookie`), so it reads exactly as Flask's.

Only this module imports Flask; it is used only when an app installs the interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict, Unpack, cast

import flask
from flask.sessions import SessionInterface as _FlaskSessionInterface, SessionMixin

from .codec import Cipher, Serializer
from .core import SessionCore, UnsignedRecords
from .devices import device_of
from .driver import run_sync
from .events import Hook
from .hashedids import HashedIds
from .options import SessionOptions, build_core, require_user_index
from .policy import CorruptionPolicy, ErrorResponse
from .session import Session
from .stores.base import SyncStore
from .stores.file import DEFAULT_DIRECTORY, FileStore

if TYPE_CHECKING:
    from flask.wrappers import Request, Response

__all__ = ["FlaskSession", "InterfaceOptions", "SessionInterface", "get_session"]

_MIN_ABSOLUTE = 30 * 24 * 60 * 60


class InterfaceOptions(TypedDict, total=False):
    """sessionguard's own options; Flask's configuration supplies the cookie's."""

    policy: CorruptionPolicy
    absolute_timeout: int
    serializer: Serializer
    merge: bool
    hooks: Sequence[Hook]
    max_size: int
    unsigned_records: UnsignedRecords
    #: The session key naming the user, for `sessionguard.users.UserSessions`. Default:
    #: Flask-Login's `_user_id`, when the store keeps a per-user index (`None`: no index).
    user_key: str | None
    #: Encrypts session data at rest (`sessionguard.cipher.RecordCipher`).
    cipher: Cipher | None
    #: Note each session's device for `UserSessions` (`sessionguard.devices`).
    record_devices: bool
    #: Store records under keyed hashes of their ids (`sessionguard.hashedids.HashedIds`).
    hashed_ids: HashedIds | None


#: Where Flask-Login keeps the logged-in user's id.
FLASK_LOGIN_USER_KEY = "_user_id"


class FlaskSession(Session, SessionMixin):
    """`flask.session`: a sessionguard `Session` with Flask's `SessionMixin` (`permanent`,
    `new`, `modified`, `accessed`). Reading a key marks it accessed, as Flask's own does,
    so the response varies by cookie."""

    #: Set when the session could not be opened (a store outage, a rejected record): the
    #: answer to send instead of calling the view.
    refusal: ErrorResponse | None = None

    # Flask's mixin declares `new` a plain attribute; here it says whether a record backs it.
    @property
    def new(self) -> bool:  # type: ignore[override]
        return self.is_new

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().get(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().setdefault(key, default)


def get_session() -> FlaskSession:
    """`flask.session`, typed as what it is, so that type checkers see `regenerate()` and
    `invalidate()` (call them at login and logout)."""
    session = flask.session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(session, FlaskSession):
        raise LookupError(
            "flask.session is not a sessionguard session: set app.session_interface = "
            "sessionguard.flask.SessionInterface(...)"
        )
    return session


class SessionInterface(_FlaskSessionInterface):
    """Install as `app.session_interface`; `store` defaults to a `FileStore` in `./sessions`."""

    def __init__(self, store: SyncStore | None = None, **options: Unpack[InterfaceOptions]) -> None:
        self.store: SyncStore = store if store is not None else FileStore(DEFAULT_DIRECTORY)
        if "user_key" not in options and getattr(self.store, "indexes_users", False):
            options["user_key"] = FLASK_LOGIN_USER_KEY
        self.options = options
        self._cores: dict[tuple[Any, ...], SessionCore] = {}

    # -- Flask's side --------------------------------------------------------------------

    def open_session(self, app: flask.Flask, request: Request) -> FlaskSession | None:
        core = self._core(app)
        if core is None:
            return None  # no SECRET_KEY: Flask's null session explains what to do
        opened = run_sync(core.open(request.headers.get("Cookie")), self.store, core.events)
        if isinstance(opened, ErrorResponse):
            # open_session cannot answer; the first before_request function will.
            _install_refusal(app)
            refused = FlaskSession()
            refused.refusal = opened
            return refused
        assert isinstance(opened, FlaskSession)
        if core.record_devices:
            opened._sg.device = device_of(request.user_agent.string, request.remote_addr)
        return opened

    def save_session(self, app: flask.Flask, session: SessionMixin, response: Response) -> None:
        core = self._core(app)
        if core is None or not isinstance(session, FlaskSession):
            return
        if session.refusal is not None:
            return  # answered already, with the refusal
        if session.accessed:
            response.vary.add("Cookie")
        result = run_sync(core.commit(session), self.store, core.events)
        if isinstance(result, ErrorResponse):
            _replace(response, result)
            return
        name = self.get_cookie_name(app)
        sent = False
        for header in result:
            cookie_name, _, rest = header.partition("=")
            if cookie_name != name:
                response.headers.add("Set-Cookie", header)  # a legacy cookie, cleared
                continue
            value = rest.split(";", 1)[0]
            if value:
                self._set_cookie(app, session, response, value)
            else:
                response.delete_cookie(name, **self._cookie(app))
                response.vary.add("Cookie")
            sent = True
        stored = session._sg.loaded is not None and not session._sg.invalidated
        # Read without marking the session accessed: that is the app's doing, not ours.
        permanent = bool(dict.get(session, "_permanent", False))
        if not sent and stored and permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]:
            # Flask re-sends a permanent session's cookie so that its expiry slides.
            self._set_cookie(app, session, response, core.signer.sign(session._sg.id))

    # -- ours ----------------------------------------------------------------------------

    def _core(self, app: flask.Flask) -> SessionCore | None:
        if not app.secret_key:
            return None
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or []
        lifetime = max(int(app.permanent_session_lifetime.total_seconds()), 1)
        name = self.get_cookie_name(app)
        config = (id(app), app.secret_key, tuple(fallbacks), lifetime, name)
        core = self._cores.get(config)
        if core is None:
            # The defaults live in build_core; Flask's configuration supplies the cookie
            # name and lifetime (the cookie's attributes are Werkzeug's, see _cookie).
            # InterfaceOptions is a subset of SessionOptions, which mypy cannot see in `**`.
            options = cast(
                SessionOptions,
                {
                    "absolute_timeout": max(_MIN_ABSOLUTE, lifetime),
                    **self.options,
                    "session_cookie": name,
                    "max_age": None,
                    "idle_timeout": lifetime,
                },
            )
            core = build_core([app.secret_key, *fallbacks], **options)
            require_user_index(core, self.store)
            core.session_class = FlaskSession
            self._cores = {config: core}  # the newest configuration only
        return core

    def _set_cookie(
        self, app: flask.Flask, session: FlaskSession, response: Response, value: str
    ) -> None:
        response.set_cookie(
            self.get_cookie_name(app),
            value,
            expires=self.get_expiration_time(app, session),
            **self._cookie(app),
        )
        response.vary.add("Cookie")  # as Flask does whenever it sends the cookie

    def _cookie(self, app: flask.Flask) -> dict[str, Any]:
        """The cookie attributes Flask's configuration sets, for setting and deleting alike."""
        return {
            "httponly": self.get_cookie_httponly(app),
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "partitioned": self.get_cookie_partitioned(app),
            "samesite": self.get_cookie_samesite(app),
        }


def _replace(response: Response, error: ErrorResponse) -> None:
    """Turn the app's response into `error` (its data would claim a save that failed)."""
    response.status_code = error.status
    response.set_data(error.body)
    for name, value in error.headers:
        if name.lower() == "set-cookie":
            response.headers.add("Set-Cookie", value)
        else:
            response.headers[name] = value


def _answer_refusal() -> Response | None:
    refusal: ErrorResponse | None = getattr(flask.session, "refusal", None)
    if refusal is None:
        return None
    response = flask.Response(refusal.body, status=refusal.status)
    for name, value in refusal.headers:
        response.headers.add(name, value)
    return response


def _install_refusal(app: flask.Flask) -> None:
    functions = app.before_request_funcs.setdefault(None, [])
    if _answer_refusal not in functions:
        functions.insert(0, _answer_refusal)
