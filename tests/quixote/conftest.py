"""A real Quixote publisher for the session3 tests, and session objects made the way
session3 makes them (its `Session.__init__` reads the current request's REMOTE_ADDR).

Quixote allows one `Publisher` per process, so this module makes it once; each test that
drives the app installs its own `SessionManager` on it.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import quixote
from quixote.directory import Directory
from quixote.http_request import HTTPRequest
from quixote.http_response import HTTPResponse
from quixote.publish import Publisher
from session3.DictSession import DictSession
from session3.Session import Session

from sessionguard.errors import ConflictError, StoreUnavailableError
from sessionguard.quixote import SessionGuardStore
from sessionguard.stores import FileStore

SECRET = "quixote-tests-secret-0123456789abcdef"


class AppSession(Session):
    """A session class as the README asks for: plain values in instance attributes."""

    def __init__(self, id: str | None) -> None:
        super().__init__(id)
        self.cart: list[str] = []

    def has_info(self) -> bool:
        return bool(self.user or self.cart)


class AppDictSession(DictSession):
    def has_info(self) -> bool:
        return bool(self.user or self.data)


class Root(Directory):
    """The app `test_app.py` serves: /login sets the user, /add?item=x fills the cart,
    /show shows both, /logout expires the session."""

    _q_exports = ["login", "add", "show", "logout"]

    def login(self) -> str:
        session = quixote.get_session()
        session.set_user(quixote.get_field("name"))
        return "ok"

    def add(self) -> str:
        quixote.get_session().cart.append(quixote.get_field("item"))
        return "ok"

    def show(self) -> str:
        session = quixote.get_session()
        return f"{session.user}:{','.join(session.cart)}"

    def logout(self) -> str:
        quixote.get_session_manager().expire_session()
        return "bye"


class AppPublisher(Publisher):
    """The README's publisher: an outage of the session store answers 503, not 500."""

    def finish_failed_request(self) -> str:
        if isinstance(sys.exc_info()[1], StoreUnavailableError | ConflictError):
            self.session_manager.finish_failed_request()
            response = quixote.get_request().response = HTTPResponse(status=503)
            response.set_header("Retry-After", "5")
            response.set_header("Content-Type", "text/plain")
            return "Sessions are unavailable for a moment; please retry.\n"
        result: str = super().finish_failed_request()
        return result


@pytest.fixture(scope="session")
def publisher() -> Publisher:
    existing: Publisher | None = quixote.get_publisher()
    if existing is not None:
        return existing
    return AppPublisher(Root(), display_exceptions="plain", error_log="/dev/null")


@pytest.fixture
def in_request(publisher: Publisher) -> Iterator[HTTPRequest]:
    """A current request, as during a Quixote request (session3's `Session()` needs one)."""
    request = HTTPRequest(io.BytesIO(), {"REMOTE_ADDR": "192.0.2.7", "SERVER_NAME": "test"})
    publisher._set_request(request)
    yield request
    publisher._clear_request()


def new_session(cls: type[Any], session_id: str, **attributes: Any) -> Any:
    """A session as `SessionManager` makes it (a request must be current)."""
    session = cls(session_id)
    for name, value in attributes.items():
        setattr(session, name, value)
    return session


@pytest.fixture
def files(tmp_path: Path) -> Iterator[FileStore]:
    store = FileStore(tmp_path / "sessions")
    yield store
    store.close()


@pytest.fixture
def store(files: FileStore) -> SessionGuardStore:
    return SessionGuardStore(files, secret_key=SECRET, session_class=AppSession)
