"""`sessionguard.flask.SessionInterface`: `flask.session` itself is the sessionguard session
(issue 11, item 2), with Flask's configuration, real Flask-Login and Flask-WTF.

The behaviours were read from Flask 3.1's own session and flashing tests (which pass with
the interface installed: see the closing note); these tests are our own.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import flask
import flask_login
import pytest
from flask_wtf.csrf import CSRFProtect, generate_csrf
from markupsafe import Markup

from sessionguard import FileStore, MemoryStore
from sessionguard.cipher import RecordCipher
from sessionguard.flask import FlaskSession, SessionInterface, get_session
from sessionguard.hashedids import HashedIds
from sessionguard.stores import Store
from sessionguard.stores.base import BaseStore
from sessionguard.users import UserSessions

from .apps import FlakyMemoryStore


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = FileStore(tmp_path / "sessions") if request.param == "file" else MemoryStore()
    yield made
    made.close()


def make_app(store: Store, **config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="flask-secret", **config)
    app.session_interface = SessionInterface(store=store)

    @app.post("/set/<key>/<value>")
    def set_value(key: str, value: str) -> str:
        flask.session[key] = value
        return "ok"

    @app.get("/read")
    def read() -> dict[str, Any]:
        return dict(flask.session)

    @app.get("/nothing")
    def nothing() -> str:
        return ""

    return app


def test_flask_session_is_kept_server_side_and_the_cookie_holds_only_a_signed_id(
    store: Store,
) -> None:
    client = make_app(store).test_client()
    client.post("/set/user/alice")

    assert client.get("/read").json == {"user": "alice"}
    cookie = client.get_cookie("session")
    assert cookie is not None and re.fullmatch(r"[0-9a-f]{40}\.[\w-]{43}", cookie.value)


def test_two_requests_changing_different_keys_both_keep_their_change(store: Store) -> None:
    app = make_app(store)
    client = app.test_client()
    client.post("/set/seed/1")
    cookie = client.get_cookie("session")
    assert cookie is not None
    interface = app.session_interface
    headers = {"Cookie": f"session={cookie.value}"}
    # Both requests load the session before either saves: the concurrent case, in steps.
    with app.test_request_context(headers=headers) as first:
        with app.test_request_context(headers=headers) as second:
            assert isinstance(first.session, FlaskSession)
            first.session["cart"] = "book"
            second.session["theme"] = "dark"
            interface.save_session(app, second.session, app.response_class())
        interface.save_session(app, first.session, app.response_class())

    assert client.get("/read").json == {"seed": "1", "cart": "book", "theme": "dark"}


def test_flasks_cookie_settings_and_vary(store: Store) -> None:
    app = make_app(
        store,
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_DOMAIN=".example.com",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PARTITIONED=True,
    )
    client = app.test_client()
    response = client.post("/set/a/1", base_url="https://www.example.com")
    cookie = response.headers["Set-Cookie"].lower()
    assert cookie.startswith("sid=")
    for part in ("domain=example.com", "path=/app", "secure", "samesite=strict", "partitioned"):
        assert part in cookie, part
    assert "httponly" not in cookie
    assert "Cookie" in response.vary
    assert "Cookie" not in client.get("/nothing", base_url="https://www.example.com").vary


def test_secret_key_fallbacks_rotate_like_flasks(store: Store) -> None:
    app = make_app(store)
    client = app.test_client()
    client.post("/set/a/1")
    app.secret_key = "new-secret"
    app.config["SECRET_KEY_FALLBACKS"] = ["flask-secret"]
    assert client.get("/read").json == {"a": "1"}
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get("/read").json == {}


def test_a_permanent_session_gets_flasks_expiry_and_slides_each_request(store: Store) -> None:
    app = make_app(store, PERMANENT_SESSION_LIFETIME=datetime.timedelta(days=3))

    @app.post("/login")
    def login() -> str:
        flask.session["user"] = "alice"
        flask.session.permanent = True
        return ""

    client = app.test_client()
    first = client.post("/login")
    expires = re.search(r"Expires=([^;]+)", first.headers["Set-Cookie"])
    assert expires is not None
    expected = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
    assert str(expected.day) in expires[1]
    assert "Set-Cookie" in client.get("/nothing").headers  # SESSION_REFRESH_EACH_REQUEST


def test_flash_keeps_categories_and_markup(store: Store) -> None:
    app = make_app(store)

    @app.post("/flash")
    def flash() -> str:
        flask.flash(Markup("<b>saved</b>"), "info")
        return ""

    @app.get("/flashes")
    def flashes() -> dict[str, Any]:
        messages: list[Any] = flask.get_flashed_messages(with_categories=True)
        ((_, message),) = messages
        return {"tuple": type(messages[0]) is tuple, "markup": isinstance(message, Markup)}

    client = app.test_client()
    client.post("/flash")
    assert client.get("/flashes").json == {"tuple": True, "markup": True}


def test_an_outage_answers_503_and_the_view_is_not_called() -> None:
    flaky = FlakyMemoryStore()
    app = make_app(flaky)
    called: list[str] = []

    @app.get("/view")
    def view() -> str:
        called.append("view")
        return ""

    client = app.test_client()
    client.post("/set/a/1")
    flaky.failing = True
    response = client.get("/view")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert called == []


def test_flask_login_login_remember_and_logout_with_a_regenerate(store: Store) -> None:
    app = make_app(store)
    login_manager = flask_login.LoginManager(app)

    class User(flask_login.UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    @login_manager.user_loader
    def load_user(user_id: str) -> User:
        return User(user_id)

    @app.post("/login")
    def login() -> str:
        flask_login.login_user(User("7"), remember=True)
        get_session().regenerate()  # at login: the pre-login id is useless from now on
        return ""

    @app.get("/me")
    def me() -> str:
        user = flask_login.current_user
        return str(user.get_id()) if user.is_authenticated else "anonymous"

    @app.post("/logout")
    def logout() -> str:
        flask_login.logout_user()
        return ""

    client = app.test_client()
    client.post("/set/seed/1")
    before = client.get_cookie("session")
    client.post("/login")
    after = client.get_cookie("session")
    assert before is not None and after is not None and before.value != after.value
    assert client.get_cookie("remember_token") is not None
    assert client.get("/me").text == "7"
    client.post("/logout")
    assert client.get("/me").text == "anonymous"


def test_flask_login_users_are_indexed_so_other_devices_can_be_logged_out(
    store: Store,
) -> None:
    app = make_app(store)
    login_manager = flask_login.LoginManager(app)

    class User(flask_login.UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    login_manager.user_loader(User)

    @app.post("/login")
    def login() -> str:
        flask_login.login_user(User("7"))
        get_session().regenerate()
        return ""

    @app.post("/logout-others")
    def logout_others() -> str:
        # The whole of "log out my other devices" in a Flask-Login app:
        users = UserSessions(cast(BaseStore, store), app.secret_key, user_key="_user_id")
        return str(users.revoke(flask_login.current_user.get_id(), keep=get_session()))

    @app.get("/me")
    def me() -> str:
        user = flask_login.current_user
        return str(user.get_id()) if user.is_authenticated else "anonymous"

    phone, laptop = app.test_client(), app.test_client()
    phone.post("/login")
    laptop.post("/login")
    assert laptop.post("/logout-others").text == "1"
    assert (laptop.get("/me").text, phone.get("/me").text) == ("7", "anonymous")


def test_flask_wtf_csrf_token_lives_in_the_session(store: Store) -> None:
    app = make_app(store)
    CSRFProtect(app)

    @app.get("/form")
    def form() -> str:
        return str(generate_csrf())

    @app.post("/submit")
    def submit() -> str:
        return "accepted"

    client = app.test_client()
    token = client.get("/form").text
    assert client.post("/submit", data={"csrf_token": token}).text == "accepted"
    assert client.post("/submit", data={"csrf_token": "forged"}).status_code == 400


def test_the_cookie_path_follows_application_root_as_in_flask(store: Store) -> None:
    app = make_app(store, APPLICATION_ROOT="/shop")
    response = app.test_client().post("/set/a/1")
    assert "path=/shop" in response.headers["Set-Cookie"].lower()


def test_without_a_secret_key_flask_session_is_flasks_null_session(store: Store) -> None:
    app = make_app(store)
    app.secret_key = None
    with app.test_request_context(), pytest.raises(RuntimeError, match="session is unavailable"):
        flask.session["user"] = "alice"


KEY = RecordCipher.new_key()


def test_the_flask_interface_encrypts_at_rest_with_cipher(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")
    app = make_app(store)
    app.session_interface = SessionInterface(store=store, cipher=RecordCipher([KEY]))
    client = app.test_client()
    client.post("/set/card/4111-1111-1111-1111")
    assert client.get("/read").json == {"card": "4111-1111-1111-1111"}
    stored = [p.read_bytes() for p in (tmp_path / "sessions").rglob("*") if p.is_file()]
    assert stored and all(b"4111" not in raw for raw in stored)
    store.close()


def test_the_flask_interface_records_devices_when_asked(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")
    app = make_app(store)
    app.session_interface = SessionInterface(store=store, record_devices=True)
    client = app.test_client()
    client.post("/set/_user_id/7", headers={"User-Agent": "Mozilla/5.0 Firefox/130.0"})
    [shown] = UserSessions(store, "flask-secret", user_key="_user_id").sessions("7")
    assert (shown.user_agent, shown.network) == ("Mozilla/5.0 Firefox/130.0", "127.0.0.0/24")
    store.close()


def test_the_flask_interface_stores_records_under_hashed_ids(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")
    ids = HashedIds(HashedIds.new_key())
    app = make_app(store)
    app.session_interface = SessionInterface(store=store, hashed_ids=ids)
    client = app.test_client()
    client.post("/set/_user_id/7")
    cookie = client.get_cookie("session")
    assert cookie is not None and client.get("/read").json == {"_user_id": "7"}
    names = [p.name for p in (tmp_path / "sessions").rglob("*")]
    assert names and not any(cookie.value.split(".")[0] in name for name in names)
    users = UserSessions(store, "flask-secret", user_key="_user_id", hashed_ids=ids)
    assert [s.session for s in users.sessions("7")] == [users.hash_of(cookie.value)]
    store.close()
