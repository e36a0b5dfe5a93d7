"""No session id, cookie value or record path in any log line or event (issue 10, finding 9).

Every failure path the middleware has is driven for real under both adapters, with every
logger at DEBUG and a hook collecting every event; then the whole text of what was
logged (messages, `extra` fields, tracebacks) and of every event is searched for the
ids and signatures of the sessions involved. Faults are injected at the `os` boundary
only (one call, one path), on a real `FileStore`.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sessionguard import CorruptionPolicy
from sessionguard.events import Event

from .apps import AppClient, CountingFileStore, SetCookie, cookie_header, session_set_cookie
from .conftest import ClientFactory


class Recorded:
    """Everything the middleware told the outside world."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.records: list[logging.LogRecord] = []

    def text(self) -> str:
        formatter = logging.Formatter()
        parts = [repr(event) for event in self.events]
        for record in self.records:
            parts.append(record.getMessage())
            parts.append(repr(record.__dict__))
            if record.exc_info:
                parts.append(formatter.formatException(record.exc_info))
        return "\n".join(parts)


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    found = Recorded()
    handler = _Collect(found.records)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield found
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def fail_once(
    monkeypatch: pytest.MonkeyPatch, name: str, matches: Callable[[Any], bool], code: int
) -> None:
    """Make `os.<name>` fail with `code` for the first call whose first argument matches."""
    real = getattr(os, name)
    state = {"armed": True}

    def call(*args: Any, **kwargs: Any) -> Any:
        if state["armed"] and matches(args[0]):
            state["armed"] = False
            raise OSError(code, os.strerror(code), str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, call)


def _names(fd: object, path: str) -> bool:
    return isinstance(fd, int) and os.readlink(f"/proc/self/fd/{fd}") == path


async def every_failure(
    client: AppClient,
    strict: AppClient,
    small: AppClient,
    store: CountingFileStore,
    monkeypatch: pytest.MonkeyPatch,
) -> list[SetCookie]:
    """Drive each failure path once; return the cookies of the sessions involved."""
    cookies = []
    for _ in range(4):
        created = session_set_cookie(await client.get("/count"))
        assert created is not None
        cookies.append(created)
    damaged, rejected, unreadable, unwritable = cookies

    def path_of(cookie: SetCookie) -> str:
        return str(store._locate(cookie.session_id)[1])

    with open(path_of(damaged), "r+b") as file:
        file.truncate(20)
    assert (await client.get("/read", cookie=cookie_header(damaged.value))).status_code == 200
    with open(path_of(rejected), "r+b") as file:
        file.truncate(20)
    assert (await strict.get("/read", cookie=cookie_header(rejected.value))).status_code == 400

    # The record cannot be read: whether through a blocking read (WSGI, or ASGI when the
    # file is not cached) or through the page-cache read ASGI tries first (on its fd).
    fail_once(monkeypatch, "open", lambda p: str(p) == path_of(unreadable), errno.EIO)
    fail_once(monkeypatch, "preadv", lambda fd: _names(fd, path_of(unreadable)), errno.EIO)
    assert (await client.get("/read", cookie=cookie_header(unreadable.value))).status_code == 503
    monkeypatch.undo()
    fail_once(monkeypatch, "replace", lambda p: unwritable.session_id in str(p), errno.ENOSPC)
    assert (await client.get("/count", cookie=cookie_header(unwritable.value))).status_code == 503
    monkeypatch.undo()

    assert (await small.get("/count", cookie=cookie_header(unwritable.value))).status_code == 413
    forged = unwritable.session_id + "." + "A" * 43
    assert (await client.get("/read", cookie=cookie_header(forged))).status_code == 200
    return cookies


async def test_no_id_signature_or_path_is_logged_or_sent_in_events_on_any_failure(
    make_client: ClientFactory,
    store: CountingFileStore,
    recorded: Recorded,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hooks = [recorded.events.append]
    client = make_client(hooks=hooks)
    strict = make_client(hooks=hooks, policy=CorruptionPolicy("reject"))
    small = make_client(hooks=hooks, max_size=20)

    cookies = await every_failure(client, strict, small, store, monkeypatch)

    text = recorded.text()
    kinds = {event.kind for event in recorded.events}
    assert {"corrupt", "store_error", "too_large", "rejected_cookie"} <= kinds, kinds
    assert "corrupt session record" in text and "could not" in text  # the paths were logged
    for cookie in cookies:
        secret_part = cookie.value.split(".", 1)[1]
        assert cookie.session_id not in text, "a raw session id was logged or sent in an event"
        assert secret_part not in text, "a cookie signature was logged"
