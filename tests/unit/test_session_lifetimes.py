"""A session's own lifetime: "remember me" (a persistent or a browser-session cookie) and
shorter idle and absolute timeouts than the middleware's (`remember_me`, `set_lifetime`).

Through the core's flows on a `MemoryStore` and a fake clock; the WSGI middleware at the
end shows the same on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

import httpx
import pytest

from sessionguard.driver import run_sync
from sessionguard.options import SessionOptions, build_core
from sessionguard.policy import ErrorResponse
from sessionguard.session import EXPIRY_KEY, Session
from sessionguard.stores.memory import MemoryStore
from sessionguard.wsgi import SessionMiddleware, get_session
from tests.clock import START, FakeClock

SECRET = "lifetime-secret"
DAY = 24 * 3600


class Site:
    def __init__(self, **options: Unpack[SessionOptions]) -> None:
        self.clock = FakeClock(START)
        self.store = MemoryStore(clock=self.clock)
        self.core = build_core(SECRET, **options)
        self.core.clock = self.clock

    def request(self, cookie: str | None, change: Any = None) -> tuple[Session, str | None]:
        """One request: open, let `change(session)` act, commit; the Set-Cookie sent."""
        session = run_sync(self.core.open(cookie), self.store)
        assert isinstance(session, Session)
        if change is not None:
            change(session)
        sent = run_sync(self.core.commit(session), self.store)
        assert not isinstance(sent, ErrorResponse)
        return session, (sent[0] if sent else None)

    def deadline(self, session: Session) -> float:
        record = self.store.load(session._sg.id)
        assert record is not None
        return record.expires_at


def max_age(set_cookie: str | None) -> str | None:
    assert set_cookie is not None
    parts = dict(p.strip().partition("=")[::2] for p in set_cookie.split(";")[1:])
    return parts.get("Max-Age")


def cookie_of(set_cookie: str | None) -> str:
    assert set_cookie is not None
    return set_cookie.split(";", 1)[0]


def test_remember_me_off_sends_a_browser_session_cookie_every_time() -> None:
    site = Site(max_age=14 * DAY)
    session, sent = site.request(None, lambda s: (s.update(user="alice"), s.remember_me(False)))
    assert max_age(sent) is None
    assert site.deadline(session) == START + 14 * DAY  # the server side is unchanged
    site.clock.advance(2 * 3600)
    _, refreshed = site.request(cookie_of(sent))  # a read-only request, refresh due
    assert refreshed is not None and max_age(refreshed) is None


def test_remember_me_on_is_the_default_persistent_cookie() -> None:
    site = Site(max_age=14 * DAY)
    _, plain = site.request(None, lambda s: s.update(user="alice"))
    _, remembered = site.request(None, lambda s: (s.update(user="bob"), s.remember_me(True)))
    assert max_age(plain) == max_age(remembered) == str(14 * DAY)


def test_a_shorter_idle_lifetime_ends_the_session_and_its_cookie_sooner() -> None:
    site = Site(max_age=14 * DAY)
    session, sent = site.request(None, lambda s: (s.update(user="alice"), s.set_lifetime(600)))
    assert max_age(sent) == "600"
    assert site.deadline(session) == START + 600
    site.clock.advance(601)
    again, _ = site.request(cookie_of(sent))
    assert again.is_new and dict(again) == {}


def test_a_session_cannot_outlive_the_middlewares_limits() -> None:
    site = Site(max_age=3600, absolute_timeout=2 * 3600)
    session, sent = site.request(
        None, lambda s: (s.update(user="alice"), s.set_lifetime(30 * DAY, absolute=60 * DAY))
    )
    assert max_age(sent) == "3600"
    assert site.deadline(session) == START + 3600
    for _ in range(3):  # active all along: the absolute limit still ends it
        site.clock.advance(3000)
        current, _ = site.request(cookie_of(sent), lambda s: s.update(seen=True))
    assert current.is_new


def test_a_shorter_absolute_lifetime_ends_an_active_session() -> None:
    site = Site(max_age=DAY)
    _, sent = site.request(None, lambda s: (s.update(user="alice"), s.set_lifetime(absolute=900)))
    site.clock.advance(600)
    kept, _ = site.request(cookie_of(sent), lambda s: s.update(seen=1))
    assert kept["user"] == "alice"
    site.clock.advance(301)
    ended, _ = site.request(cookie_of(sent))
    assert ended.is_new


def test_the_choice_is_a_session_key_that_merges_with_concurrent_changes() -> None:
    site = Site()
    _, sent = site.request(None, lambda s: s.update(user="alice"))
    first = run_sync(site.core.open(cookie_of(sent)), site.store)
    second = run_sync(site.core.open(cookie_of(sent)), site.store)
    assert isinstance(first, Session) and isinstance(second, Session)
    first.remember_me(False)
    second["cart"] = ["book"]
    run_sync(site.core.commit(first), site.store)
    merged = run_sync(site.core.commit(second), site.store)
    assert not isinstance(merged, ErrorResponse) and max_age(merged[0]) is None
    final, _ = site.request(cookie_of(sent))
    assert final["cart"] == ["book"] and final[EXPIRY_KEY] == {"persistent": False}


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "600"])
def test_a_lifetime_must_be_a_positive_number_of_seconds(bad: object) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        Session().set_lifetime(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Session().remember_me("no")  # type: ignore[arg-type]


def test_over_a_websocket_there_is_no_cookie_to_change() -> None:
    with pytest.raises(TypeError, match="websocket"):
        Session(read_only=True).remember_me(False)


def test_on_the_wire_through_the_wsgi_middleware() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        session = get_session(environ)
        session["user"] = "alice"
        session.remember_me(environ["PATH_INFO"] == "/remember")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = SessionMiddleware(app, SECRET, store=MemoryStore())
    with httpx.Client(transport=httpx.WSGITransport(app=wrapped), base_url="http://x") as client:
        kept = client.get("/remember").headers["set-cookie"]
        forgotten = client.get("/forget").headers["set-cookie"]
    assert "Max-Age=" in kept and "Max-Age=" not in forgotten
