"""What the engine promises beyond Django's contract, request by request, in one process.

Concurrency is played out in order: two `SessionStore` objects on one key stand for two
requests in flight (each loaded the session before the other saved), and the
middleware is driven with `RequestFactory` requests, so each interleaving is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.backends.base import UpdateError
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

from sessionguard import CorruptionPolicy, FileStore
from sessionguard.django import SessionMiddleware, SessionStore
from sessionguard.errors import SessionRefusedError

View = Callable[[HttpRequest], HttpResponse]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    """A FileStore of this test's own, installed as SESSIONGUARD_STORE."""
    store = FileStore(tmp_path / "sessions")
    with override_settings(SESSIONGUARD_STORE=store):
        yield store


def stored_session(**data: Any) -> str:
    """Create a stored session holding `data`; return its key (the cookie's value)."""
    session = SessionStore()
    session.update(data)
    session.save()
    assert session.session_key is not None
    return session.session_key


def serve(view: View, cookie: str | None, *, name: str = "sessionid") -> HttpResponse:
    """One request through the middleware, carrying `cookie` as the session cookie."""
    request = RequestFactory().get("/")
    if cookie is not None:
        request.COOKIES[name] = cookie
    response: HttpResponse = SessionMiddleware(view)(request)
    return response


# -- cycle_key(): the forward pointer -------------------------------------------------------


def test_cycle_key_keeps_the_changes_of_a_request_in_flight(store: FileStore) -> None:
    old = stored_session(cart="1 book")
    in_flight = SessionStore(old)
    assert in_flight["cart"] == "1 book"  # loaded before the login below

    login = SessionStore(old)
    login["_auth_user_id"] = "7"
    login.cycle_key()
    new = login.session_key
    assert new is not None and new != old

    in_flight["cart"] = "2 books"
    in_flight.save()

    assert dict(SessionStore(new).load()) == {"_auth_user_id": "7", "cart": "2 books"}
    # The request in flight saved into the new session without learning its key.
    assert in_flight.session_key == old
    assert in_flight.cookie_action is None


def test_the_old_key_never_leads_to_the_new_session(store: FileStore) -> None:
    fixated = stored_session(theme="dark")
    login = SessionStore(fixated)
    login["_auth_user_id"] = "7"
    login.cycle_key()

    # Whoever still holds the old key (an attacker who planted it) gets a fresh session.
    attacker = SessionStore(fixated)
    assert dict(attacker.load()) == {}
    assert attacker.session_key is None
    assert not attacker.exists(fixated)
    attacker["_auth_user_id"] = "666"
    attacker.save()
    assert attacker.session_key not in (fixated, login.session_key)
    assert SessionStore(login.session_key)["_auth_user_id"] == "7"


def test_cycle_key_refuses_in_flight_saves_when_carrying_is_off(store: FileStore) -> None:
    with override_settings(SESSIONGUARD_OPTIONS={"carry_in_flight": False}):
        old = stored_session(cart="1 book")
        in_flight = SessionStore(old)
        assert in_flight["cart"] == "1 book"
        login = SessionStore(old)
        login.cycle_key()

        in_flight["cart"] = "2 books"
        with pytest.raises(SessionRefusedError) as refused:
            in_flight.save()
    assert refused.value.status == 409
    assert in_flight.refusal is not None and in_flight.refusal.status == 409
    assert dict(SessionStore(login.session_key).load()) == {"cart": "1 book"}


def test_login_racing_a_logout_starts_a_new_session(store: FileStore) -> None:
    old = stored_session(cart="1 book")
    login = SessionStore(old)
    login["_auth_user_id"] = "7"
    SessionStore(old).flush()  # the logout lands first

    login.cycle_key()
    assert login.session_key not in (None, old)
    assert dict(SessionStore(login.session_key).load()) == {
        "cart": "1 book",
        "_auth_user_id": "7",
    }
    assert dict(SessionStore(old).load()) == {}


# -- flush(): logout wins -------------------------------------------------------------------


def test_flush_wins_over_a_slower_request_through_the_middleware(store: FileStore) -> None:
    key = stored_session(_auth_user_id="7")

    def slow_view(request: HttpRequest) -> HttpResponse:
        request.session["last_page"] = "/cart"  # loaded and changed ...
        SessionStore(key).flush()  # ... while the user logs out in another tab
        return HttpResponse("ok")

    response = serve(slow_view, key)

    assert response.status_code == 200  # not Django's 400 SessionInterrupted
    cookie = response.cookies["sessionid"]
    assert cookie.value == "" and cookie["max-age"] == 0
    assert dict(SessionStore(key).load()) == {}
    assert not SessionStore().exists(key)


def test_save_after_a_concurrent_flush_raises_update_error_and_stores_nothing(
    store: FileStore,
) -> None:
    key = stored_session(a=1)
    first = SessionStore(key)
    first["b"] = 2
    SessionStore(key).flush()
    with pytest.raises(UpdateError):
        first.save()
    assert not first.exists(key)
    assert sum(1 for _ in store.scan()) == 0


# -- corrupt records: the policy decides ------------------------------------------------------


def _damage(store: FileStore, key: str) -> bytes:
    path = store._locate(key.split(".")[0])[1]
    damaged = Path(path).read_bytes()[:-7] + b"garbage"
    Path(path).write_bytes(damaged)
    return damaged


def test_corrupt_record_is_reset_by_default(
    store: FileStore, caplog: pytest.LogCaptureFixture
) -> None:
    key = stored_session(_auth_user_id="7")
    _damage(store, key)

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(dict(request.session)))

    with caplog.at_level(logging.WARNING, logger="sessionguard"):
        response = serve(view, key)
    assert response.status_code == 200 and response.content == b"{}"
    assert any("corrupt session record" in r.getMessage() for r in caplog.records)
    assert key.split(".")[0] not in caplog.text  # logs name a hash, never the id
    assert response.cookies["sessionid"].value == ""  # the dead cookie is cleared


def test_corrupt_record_rejected_with_400_keeps_the_bytes(store: FileStore) -> None:
    key = stored_session(_auth_user_id="7")
    damaged = _damage(store, key)

    def view(request: HttpRequest) -> HttpResponse:
        request.session["x"] = 1
        return HttpResponse("the view ran")

    with override_settings(SESSIONGUARD_OPTIONS={"policy": CorruptionPolicy("reject")}):
        response = serve(view, key)
    assert response.status_code == 400
    assert b"the view ran" not in response.content
    assert Path(store._locate(key.split(".")[0])[1]).read_bytes() == damaged


# -- cookies --------------------------------------------------------------------------------


def test_the_first_cookie_that_verifies_wins(store: FileStore) -> None:
    key = stored_session(user="alice")
    request = RequestFactory().get("/", HTTP_COOKIE=f"sessionid=forged.value; sessionid={key}")

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(request.session.get("user", "nobody"))

    response = SessionMiddleware(view)(request)
    assert response.content == b"alice"


def test_a_foreign_cookie_of_the_same_name_is_left_alone(store: FileStore) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(request.session.get("user")))

    response = serve(view, "someone-elses-session-id-0123456789")
    assert "sessionid" not in response.cookies
    assert sum(1 for _ in store.scan()) == 0


def test_an_expired_session_cookie_is_cleared(store: FileStore) -> None:
    session = SessionStore()
    session["a"] = 1
    session.set_expiry(-10)
    session.save()

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(request.session.get("a")))

    response = serve(view, session.session_key)
    assert response.content == b"None"
    assert response.cookies["sessionid"].value == ""


@pytest.mark.parametrize("cookie", ["forged-value-0123456789", "0" * 40 + "." + "A" * 43])
def test_save_every_request_stores_nothing_for_a_dead_cookie(store: FileStore, cookie: str) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(request.session.get("user")))

    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        for _ in range(3):
            response = serve(view, cookie)
            assert response.status_code == 200
            assert "sessionid" not in response.cookies
    assert sum(1 for _ in store.scan()) == 0


def test_in_place_change_is_saved_every_request_as_a_change_of_that_key_only(
    store: FileStore,
) -> None:
    key = stored_session(cart=["book"], theme="light")

    def view(request: HttpRequest) -> HttpResponse:
        request.session["cart"].append("pen")  # in place: no assignment
        other = SessionStore(key)  # a concurrent request changes another key ...
        other["theme"] = "dark"
        other.save()  # ... and saves while this one runs
        return HttpResponse("ok")

    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        assert serve(view, key).status_code == 200
    assert dict(SessionStore(key).load()) == {"cart": ["book", "pen"], "theme": "dark"}
