"""A real Quixote app (`Publisher` + session3's `SessionManager`, served through Quixote's
WSGI adapter) whose only change is the store: `SessionManager(SessionGuardStore(...))`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from quixote.publish import Publisher
from quixote.wsgi import QWIP
from session3.SessionManager import SessionManager
from werkzeug.test import Client

from sessionguard.codec import decode
from sessionguard.quixote import SessionGuardStore
from sessionguard.stores import FileStore
from sessionguard.stores.redis import RedisStore
from tests.servers import free_port

from .conftest import SECRET, AppSession


@pytest.fixture
def client(publisher: Publisher, store: SessionGuardStore) -> Iterator[Client]:
    publisher.set_session_manager(SessionManager(store, AppSession))  # the one-line switch
    yield Client(QWIP(publisher))
    publisher.set_session_manager(None)


def _session_id(client: Client) -> str:
    cookie = client.get_cookie("QX_session")
    assert cookie is not None
    return cookie.value.strip('"')  # Quixote quotes the value


def test_a_session_lives_across_requests_in_the_store(client: Client, files: FileStore) -> None:
    assert client.get("/show").text == "None:"
    assert client.get_cookie("QX_session") is None  # nothing worth keeping yet

    client.get("/login?name=ada")
    client.get("/add?item=tea")
    client.get("/add?item=jam")

    assert client.get("/show").text == "ada:tea,jam"
    record = files.load(_session_id(client))
    assert record is not None
    data = decode(record.payload).data  # an envelope of plain values, no pickle
    assert data["attributes"]["user"] == "ada" and data["attributes"]["cart"] == ["tea", "jam"]


def test_a_corrupt_record_gives_a_new_session_not_a_hang(client: Client, files: FileStore) -> None:
    client.get("/login?name=ada")
    sid = _session_id(client)
    files.save(sid, b"", expires_at=files.load(sid).expires_at)  # type: ignore[union-attr]

    response = client.get("/show")

    assert response.status_code == 200 and response.text == "None:"
    assert files.load(sid) is None


def test_logout_deletes_the_record(client: Client, files: FileStore) -> None:
    client.get("/login?name=ada")
    sid = _session_id(client)

    client.get("/logout")

    assert files.load(sid) is None
    assert client.get("/show").text == "None:"


def test_an_outage_answers_503(publisher: Publisher) -> None:
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    store = SessionGuardStore(dead, secret_key=SECRET, session_class=AppSession)
    publisher.set_session_manager(SessionManager(store, AppSession))
    try:
        client = Client(QWIP(publisher))
        client.set_cookie("QX_session", "adaADAada01")
        response = client.get("/show")
    finally:
        publisher.set_session_manager(None)
        dead.close()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
