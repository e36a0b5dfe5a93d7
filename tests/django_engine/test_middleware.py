"""`sessionguard.django.SessionMiddleware` as a drop-in for Django's `SessionMiddleware`.

The cookie it sets and deletes reads exactly as Django's; it saves when Django's would
(changed, or every request with `SESSION_SAVE_EVERY_REQUEST`, never on a 5xx) and varies
the response on the cookie when the session was used. Every request runs twice: through
a plain view (the blocking `save()`), and through a coroutine view, where the middleware
is a coroutine function and saves with `asave()`. Then where it differs from Django on
purpose: a session ended by a concurrent request clears the cookie instead of answering
400, and a cookie that does not verify is never cleared by a request that only reads.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.contrib.sessions.exceptions import SessionInterrupted
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

from sessionguard.cookie import Signer
from sessionguard.django import SessionMiddleware, SessionStore
from sessionguard.stores.memory import MemoryStore

View = Callable[[HttpRequest], HttpResponse]

factory = RequestFactory()

#: The Set-Cookie Django's SessionMiddleware sends to delete the session cookie.
DELETED = (
    'Set-Cookie: {name}=""; {domain}expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; '
    "Path={path}; SameSite={samesite}"
)


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryStore]:
    """A store of each test's own."""
    memory = MemoryStore()
    with override_settings(SESSIONGUARD_STORE=memory):
        yield memory


class Runner:
    """Runs a request through the middleware around a view, in one of two modes.

    "sync": the view as given, the middleware called as Django's WSGI handler does.
    "async": the view wrapped in a coroutine function, the middleware awaited as Django's
    ASGI handler does; the blocking `save()` then fails the test if it is used.
    `saves` counts the middleware's saves (`save()` or `asave()`).
    """

    def __init__(self, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mode = mode
        self.saves = 0
        self._monkeypatch = monkeypatch

    async def __call__(self, view: View, request: HttpRequest) -> HttpResponse:
        with self._monkeypatch.context() as patch:
            if self.mode == "sync":
                self._spy(patch, "save")
                middleware = SessionMiddleware(view)
                assert not iscoroutinefunction(middleware)
                response: HttpResponse = middleware(request)
                return response

            async def async_view(request: HttpRequest) -> HttpResponse:
                return view(request)

            self._spy(patch, "asave")
            patch.setattr(SessionStore, "save", _blocking_save_under_asgi)
            middleware = SessionMiddleware(async_view)
            assert iscoroutinefunction(middleware)
            result = middleware(request)
            assert inspect.isawaitable(result)
            response = await result
            return response

    def _spy(self, patch: pytest.MonkeyPatch, name: str) -> None:
        original = getattr(SessionStore, name)
        runner = self

        if name == "asave":

            async def spy_async(self: SessionStore, *args: Any, **kwargs: Any) -> None:
                runner.saves += 1
                await original(self, *args, **kwargs)

            patch.setattr(SessionStore, name, spy_async)
        else:

            def spy(self: SessionStore, *args: Any, **kwargs: Any) -> None:
                runner.saves += 1
                original(self, *args, **kwargs)

            patch.setattr(SessionStore, name, spy)


def _blocking_save_under_asgi(self: SessionStore, must_create: bool = False) -> None:
    raise AssertionError("the middleware used the blocking save() under ASGI")


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Runner:
    return Runner(request.param, monkeypatch)


# -- helpers -----------------------------------------------------------------------------


def name() -> str:
    return str(settings.SESSION_COOKIE_NAME)


def get(cookie: str | None = None, path: str = "/") -> HttpRequest:
    """A GET carrying `cookie` as the session cookie, as a browser sends it."""
    if cookie is None:
        return factory.get(path)
    return factory.get(path, HTTP_COOKIE=f"{name()}={cookie}")


def stored_session(**data: Any) -> str:
    """The key of a stored session holding `data`, as an earlier request left it."""
    session = SessionStore()
    session.update(data)
    session.save()
    assert session.session_key is not None
    return str(session.session_key)


def contents(key: str | None) -> dict[str, Any]:
    """What a later request with `key` in its cookie reads."""
    return dict(SessionStore(key).items())


def deleted(*, domain: str | None = None, path: str = "/") -> str:
    return DELETED.format(
        name=name(),
        domain=f"Domain={domain}; " if domain else "",
        path=path,
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


def touching(request: HttpRequest) -> HttpResponse:
    request.session["hello"] = "world"
    return HttpResponse("Session test")


def reading(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.session.get("hello")))


def untouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Session test")


def flushing(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponse("Session test")


# -- the cookie's attributes -------------------------------------------------------------


async def test_a_changed_session_is_saved_and_its_cookie_set(run: Runner) -> None:
    request = get()
    response = await run(touching, request)

    key = request.session.session_key
    assert key is not None
    morsel = response.cookies[name()]
    assert morsel.value == key
    assert morsel["max-age"] == settings.SESSION_COOKIE_AGE
    assert morsel["path"] == "/"
    assert morsel["domain"] == ""
    assert response.headers["Vary"] == "Cookie"
    assert run.saves == 1
    assert contents(key) == {"hello": "world"}


@pytest.mark.parametrize("secure", [True, False])
async def test_secure_flag_follows_the_setting(run: Runner, secure: bool) -> None:
    with override_settings(SESSION_COOKIE_SECURE=secure):
        response = await run(touching, get())
    morsel = response.cookies[name()]
    assert morsel["secure"] is (True if secure else "")
    assert ("Secure" in str(morsel)) is secure
    assert response.headers["Vary"] == "Cookie"


@pytest.mark.parametrize("httponly", [True, False])
async def test_httponly_flag_follows_the_setting(run: Runner, httponly: bool) -> None:
    with override_settings(SESSION_COOKIE_HTTPONLY=httponly):
        response = await run(touching, get())
    morsel = response.cookies[name()]
    assert morsel["httponly"] is (True if httponly else "")
    assert ("HttpOnly" in str(morsel)) is httponly


@pytest.mark.parametrize("samesite", ["Strict", "Lax", "None"])
async def test_samesite_follows_the_setting(run: Runner, samesite: str) -> None:
    with override_settings(SESSION_COOKIE_SAMESITE=samesite):
        response = await run(touching, get())
    morsel = response.cookies[name()]
    assert morsel["samesite"] == samesite
    assert f"SameSite={samesite}" in str(morsel)


async def test_name_domain_path_and_age_follow_the_settings(run: Runner) -> None:
    with override_settings(
        SESSION_COOKIE_NAME="custom_sid",
        SESSION_COOKIE_DOMAIN=".example.local",
        SESSION_COOKIE_PATH="/example/",
        SESSION_COOKIE_AGE=600,
    ):
        request = get(path="/example/")
        response = await run(touching, request)
        assert set(response.cookies) == {"custom_sid"}
        morsel = response.cookies["custom_sid"]
        assert morsel["domain"] == ".example.local"
        assert morsel["path"] == "/example/"
        assert morsel["max-age"] == 600
        assert morsel["expires"]

        # The next request reads it back under that name.
        follow_up = factory.get("/example/", HTTP_COOKIE=f"custom_sid={morsel.value}")
        assert (await run(reading, follow_up)).content == b"world"


async def test_expire_at_browser_close_sets_a_session_cookie(run: Runner) -> None:
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        response = await run(touching, get())
    morsel = response.cookies[name()]
    assert morsel["max-age"] == ""
    assert morsel["expires"] == ""


@pytest.mark.parametrize(("expiry", "max_age"), [(60, 60), (0, "")])
async def test_set_expiry_in_the_view_shapes_the_cookie(
    run: Runner, expiry: int, max_age: object
) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        request.session["hello"] = "world"
        request.session.set_expiry(expiry)
        return HttpResponse()

    response = await run(view, get())
    assert response.cookies[name()]["max-age"] == max_age


# -- when it saves -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
async def test_no_save_on_a_5xx_response(
    run: Runner, store: MemoryStore, status: int, existing: bool
) -> None:
    key = stored_session(before=1) if existing else None

    def failing(request: HttpRequest) -> HttpResponse:
        request.session["hello"] = "world"
        return HttpResponse("Horrible error", status=status)

    request = get(key)
    response = await run(failing, request)

    assert response.status_code == status
    assert run.saves == 0
    assert name() not in response.cookies
    assert "hello" not in SessionStore(request.session.session_key).load()
    assert len(list(store.scan())) == (1 if existing else 0)
    if key is not None:
        assert contents(key) == {"before": 1}


async def test_an_untouched_session_is_not_saved(run: Runner) -> None:
    key = stored_session(hello="world")
    response = await run(untouched, get(key))
    assert run.saves == 0
    assert response.cookies == {}
    assert "Vary" not in response.headers


async def test_a_session_only_read_is_not_saved_but_varies(run: Runner) -> None:
    key = stored_session(hello="world")
    response = await run(reading, get(key))
    assert response.content == b"world"
    assert run.saves == 0
    assert response.cookies == {}
    assert response.headers["Vary"] == "Cookie"


@override_settings(SESSION_SAVE_EVERY_REQUEST=True)
async def test_save_every_request_renews_the_cookie_of_an_untouched_session(
    run: Runner,
) -> None:
    first = get()
    await run(touching, first)
    assert first.session.is_empty() is False
    assert first.session["hello"] == "world"
    key = first.session.session_key

    response = await run(untouched, get(key))

    assert name() in response.cookies
    assert response.cookies[name()].value == key
    assert response.cookies[name()]["max-age"] == settings.SESSION_COOKIE_AGE
    assert response.headers["Vary"] == "Cookie"
    assert contents(key) == {"hello": "world"}


@override_settings(SESSION_SAVE_EVERY_REQUEST=True)
async def test_save_every_request_stores_no_empty_session_without_a_cookie(
    run: Runner, store: MemoryStore
) -> None:
    response = await run(untouched, get())
    assert response.cookies == {}
    assert run.saves == 0
    assert list(store.scan()) == []


async def test_an_emptied_session_with_a_key_is_still_saved(run: Runner) -> None:
    def setting(request: HttpRequest) -> HttpResponse:
        request.session["foo"] = "bar"
        return HttpResponse("Session test")

    request = get()
    response = await run(setting, request)
    key = request.session.session_key
    assert tuple(request.session.items()) == (("foo", "bar"),)
    assert f"Set-Cookie: {name()}={key}" in str(response.cookies)
    assert response.headers["Vary"] == "Cookie"

    # Empty it, and finish the request again through process_response.
    del request.session["foo"]
    middleware = SessionMiddleware(untouched)
    response = middleware.process_response(request, HttpResponse("Session test"))

    assert dict(request.session.items()) == {}
    assert request.session.session_key == key
    assert len(key) > 8
    assert SessionStore(key).load() == {}
    assert SessionStore(key).exists(key) is True
    assert f"Set-Cookie: {name()}={key}" in str(response.cookies)
    assert response.headers["Vary"] == "Cookie"


@override_settings(SESSION_SAVE_EVERY_REQUEST=True)
@pytest.mark.parametrize("cookie", ["ended", "forged", "foreign"])
async def test_save_every_request_with_a_dead_cookie_stores_nothing(
    run: Runner, store: MemoryStore, cookie: str
) -> None:
    """An untouched request whose cookie leads nowhere leaves no empty record behind,
    and sets no cookie: an ended session's cookie is cleared, one that does not verify
    (forged, or another app's of the same name) is left alone."""
    key = stored_session(hello="world")
    SessionStore(key).delete()
    value = {
        "ended": key,
        "forged": _unverified("forged", key),
        "foreign": "another-apps-value",
    }[cookie]

    response = await run(untouched, get(value))

    assert list(store.scan()) == []
    if cookie == "ended":
        assert str(response.cookies[name()]) == deleted()
    else:
        assert name() not in response.cookies


async def test_cycle_key_in_the_view_sends_the_new_key(run: Runner) -> None:
    old = stored_session(user=1)

    def login(request: HttpRequest) -> HttpResponse:
        request.session.cycle_key()
        return HttpResponse()

    response = await run(login, get(old))

    new = response.cookies[name()].value
    assert new not in ("", old)
    assert response.headers["Vary"] == "Cookie"
    assert contents(new) == {"user": 1}
    assert contents(old) == {}
    assert SessionStore().exists(old) is False


# -- flush -------------------------------------------------------------------------------


@pytest.mark.parametrize("cookie", ["stored", "unverified"])
@pytest.mark.parametrize("custom", [False, True], ids=["default", "custom_domain_path"])
async def test_flush_deletes_the_cookie_as_django_does(
    run: Runner, store: MemoryStore, cookie: str, custom: bool
) -> None:
    where = {"SESSION_COOKIE_DOMAIN": ".example.local", "SESSION_COOKIE_PATH": "/example/"}
    with override_settings(**(where if custom else {})):
        value = stored_session(user=1) if cookie == "stored" else "abc"

        response = await run(flushing, get(value))

        expected = deleted(domain=".example.local", path="/example/") if custom else deleted()
        assert str(response.cookies[name()]) == expected
    assert response.headers["Vary"] == "Cookie"
    assert run.saves == 0
    assert list(store.scan()) == []


async def test_flush_without_a_cookie_sets_none_but_varies(run: Runner) -> None:
    response = await run(flushing, get())
    assert response.cookies == {}
    assert response.headers["Vary"] == "Cookie"


async def test_flush_then_set_starts_a_new_session(run: Runner) -> None:
    old = stored_session(user=1)

    def logout_with_message(request: HttpRequest) -> HttpResponse:
        request.session.flush()
        request.session["message"] = "bye"
        return HttpResponse()

    request = get(old)
    response = await run(logout_with_message, request)

    new = response.cookies[name()].value
    assert new not in ("", old)
    assert contents(new) == {"message": "bye"}
    assert contents(old) == {}


# -- calling the hooks directly ----------------------------------------------------------


def test_process_request_and_process_response_called_directly() -> None:
    middleware = SessionMiddleware(untouched)
    request = get()
    middleware.process_request(request)
    assert isinstance(request.session, SessionStore)
    assert request.session.session_key is None
    request.session["hello"] = "world"

    response = middleware.process_response(request, HttpResponse())

    key = request.session.session_key
    assert response.cookies[name()].value == key
    assert response.headers["Vary"] == "Cookie"
    assert contents(key) == {"hello": "world"}

    # And again with that cookie: the hook reads the stored session.
    follow_up = get(key)
    middleware.process_request(follow_up)
    assert follow_up.session.session_key == key
    assert follow_up.session["hello"] == "world"
    response = middleware.process_response(follow_up, HttpResponse())
    assert response.cookies == {}


async def test_aprocess_response_called_directly_saves_with_asave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SessionStore, "save", _blocking_save_under_asgi)
    middleware = SessionMiddleware(untouched)
    request = get()
    middleware.process_request(request)
    await request.session.aset("hello", "world")

    response = await middleware.aprocess_response(request, HttpResponse())

    key = request.session.session_key
    assert response.cookies[name()].value == key
    assert await SessionStore(key).aget("hello") == "world"


def test_a_cookie_set_on_the_request_object_is_read() -> None:
    """RequestFactory users set `request.COOKIES` directly, as Django's own tests do."""
    key = stored_session(hello="world")
    request = factory.get("/")
    request.COOKIES[name()] = key
    response = SessionMiddleware(reading)(request)
    assert response.content == b"world"


# -- where sessionguard differs from Django ----------------------------------------------


async def test_a_session_deleted_by_a_concurrent_request_clears_the_cookie(
    run: Runner, store: MemoryStore
) -> None:
    key = stored_session(user=1)

    def changed_while_logged_out(request: HttpRequest) -> HttpResponse:
        request.session["cart"] = ["book"]
        SessionStore(request.session.session_key).delete()  # a logout, concurrently
        return HttpResponse("done")

    try:
        response = await run(changed_while_logged_out, get(key))
    except SessionInterrupted as exc:  # pragma: no cover - what Django's middleware does
        pytest.fail(f"the middleware raised {exc!r}")

    assert response.status_code == 200
    assert response.content == b"done"
    assert str(response.cookies[name()]) == deleted()
    assert response.headers["Vary"] == "Cookie"
    assert run.saves == 1
    assert list(store.scan()) == []  # not resurrected
    assert contents(key) == {}


def _unverified(kind: str, real: str) -> str:
    ident, _, signature = real.partition(".")
    return {
        "garbage": "abc",
        "raw_id": ident,
        "forged": f"{ident}.{'A' * 43}",
        "other_id": f"{'0' * 40}.{signature}",
        "unrelated_secret": Signer("some other application's secret").sign(ident),
    }[kind]


@pytest.mark.parametrize("kind", ["garbage", "raw_id", "forged", "other_id", "unrelated_secret"])
async def test_a_cookie_that_does_not_verify_is_never_cleared_by_a_read(
    run: Runner, kind: str
) -> None:
    real = stored_session(hello="world")
    request = get(_unverified(kind, real))

    response = await run(reading, request)

    assert response.content == b"None"
    assert name() not in response.cookies
    assert response.headers["Vary"] == "Cookie"
    assert request.session.session_key is None
    assert contents(real) == {"hello": "world"}


async def test_a_cookie_that_does_not_verify_is_replaced_only_by_a_new_session(
    run: Runner,
) -> None:
    real = stored_session(hello="mine")
    response = await run(touching, get(_unverified("forged", real)))
    new = response.cookies[name()].value
    assert new not in ("", real)
    assert contents(new) == {"hello": "world"}
    assert contents(real) == {"hello": "mine"}


async def test_a_verified_cookie_whose_session_is_gone_is_cleared(run: Runner) -> None:
    key = stored_session(hello="world")
    SessionStore(key).delete()

    response = await run(reading, get(key))

    assert response.content == b"None"
    assert str(response.cookies[name()]) == deleted()
    assert response.headers["Vary"] == "Cookie"


async def test_of_several_cookies_of_the_name_the_one_that_verifies_wins(
    run: Runner,
) -> None:
    key = stored_session(hello="world")
    request = factory.get("/", HTTP_COOKIE=f"{name()}=another-apps-value; {name()}={key}")
    response = await run(reading, request)
    assert response.content == b"world"
    assert name() not in response.cookies


async def test_the_async_middleware_is_a_coroutine_function_and_uses_asave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SessionStore, "save", _blocking_save_under_asgi)
    saved: list[str | None] = []
    original = SessionStore.asave

    async def recording(self: SessionStore, must_create: bool = False) -> None:
        await original(self, must_create)
        saved.append(self.session_key)

    monkeypatch.setattr(SessionStore, "asave", recording)

    async def view(request: HttpRequest) -> HttpResponse:
        await request.session.aset("hello", "world")
        return HttpResponse()

    middleware = SessionMiddleware(view)
    assert iscoroutinefunction(middleware)
    request = get()
    response = await middleware(request)

    key = request.session.session_key
    assert saved == [key]
    assert response.cookies[name()].value == key
    assert await SessionStore(key).aget("hello") == "world"
