"""Device metadata, privacy first: with `record_devices=True` a session notes the user
agent (cut short) and the client's network (never its address) when it is created or a
user logs in on it; the app may label it; `UserSessions` shows it; no log line has it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from sessionguard.codec import decode
from sessionguard.devices import device_of
from sessionguard.session import DEVICE_KEY
from sessionguard.stores.memory import MemoryStore
from sessionguard.users import UserSessions
from sessionguard.wsgi import SessionMiddleware, get_session

from .apps import SECRET, cookie_header, session_set_cookie
from .conftest import ClientFactory

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"


def site(store: MemoryStore, **options: Any) -> httpx.Client:
    """A raw WSGI app: /login sets the user, /label names the device, /read reads."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/login":
            session["user"] = "alice"
        elif environ["PATH_INFO"] == "/label":
            session.label_device("Work laptop")
        elif environ["PATH_INFO"] == "/visit":
            session["visits"] = session.get("visits", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = SessionMiddleware(app, SECRET, store=store, user_key="user", **options)
    return httpx.Client(transport=httpx.WSGITransport(app=wrapped), base_url="http://x")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_a_login_notes_the_browser_and_the_network_never_the_address(store: MemoryStore) -> None:
    client = site(store, record_devices=True)
    client.get("/login", headers={"user-agent": FIREFOX})

    [shown] = UserSessions(store, SECRET, user_key="user").sessions("alice")

    assert shown.user_agent == FIREFOX
    assert shown.network == "127.0.0.0/24"  # httpx's WSGI transport's REMOTE_ADDR
    assert shown.label is None and shown.created_at <= shown.last_seen <= shown.expires_at


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::/48"),
        ("unix:/run/app.sock", None),
        (None, None),
    ],
)
def test_only_the_network_of_the_client_is_kept(address: str | None, network: str | None) -> None:
    assert device_of(None, address).get("network") == network


def test_a_long_user_agent_is_cut_short() -> None:
    assert device_of("x" * 5000, None) == {"user_agent": "x" * 160}


def test_off_by_default_nothing_about_the_device_is_stored(store: MemoryStore) -> None:
    client = site(store)
    cookie = client.get("/login", headers={"user-agent": FIREFOX}).headers["set-cookie"]
    record = store.load(cookie.split("=", 1)[1].split(".", 1)[0])
    assert record is not None and DEVICE_KEY not in decode(record.payload).data
    assert FIREFOX.encode() not in record.payload


def test_a_read_only_request_writes_nothing_for_its_device(store: MemoryStore) -> None:
    client = site(store, record_devices=True)
    login = client.get("/login", headers={"user-agent": FIREFOX})
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    before = store.load(cookie.split("=", 1)[1].split(".", 1)[0])
    again = client.get("/read", headers={"user-agent": "another browser", "cookie": cookie})
    after = store.load(cookie.split("=", 1)[1].split(".", 1)[0])
    assert "set-cookie" not in again.headers and before == after


def test_the_apps_label_is_shown_and_survives_a_later_login(store: MemoryStore) -> None:
    client = site(store, record_devices=True)
    cookie = client.get("/visit").headers["set-cookie"].split(";", 1)[0]
    client.get("/label", headers={"cookie": cookie})
    client.get("/login", headers={"cookie": cookie, "user-agent": FIREFOX})

    [shown] = UserSessions(store, SECRET, user_key="user").sessions("alice")

    assert (shown.label, shown.user_agent) == ("Work laptop", FIREFOX)


async def test_through_each_adapter_the_client_and_user_agent_come_from_the_request(
    make_client: ClientFactory, store: MemoryStore
) -> None:
    client = make_client(store=store, user_key="user", record_devices=True)
    first = session_set_cookie(await client.get("/count"))
    assert first is not None
    await client.post("/login", cookie=cookie_header(first.value))

    [shown] = UserSessions(store, SECRET, user_key="user").sessions("alice")

    assert shown.user_agent is not None and shown.user_agent.startswith("python-httpx")
    assert shown.network == "127.0.0.0/24"


def test_no_log_line_ever_holds_the_device(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    client = site(store, record_devices=True)
    with caplog.at_level(logging.DEBUG):
        login = client.get("/login", headers={"user-agent": FIREFOX})
        key = login.headers["set-cookie"].split("=", 1)[1].split(".", 1)[0]
        store.save(key, b"damaged", expires_at=2**40)  # a corrupt record: logged
        client.get("/read", headers={"cookie": login.headers["set-cookie"].split(";", 1)[0]})
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "corrupt" in logged  # something was logged about this session
    assert "Firefox" not in logged and "127.0.0" not in logged
