"""A store that fails: 503 with Retry-After, the stored data intact, no debris left.

Disk faults are injected at the `os` boundary, for the session's temp file only: a full
disk or an I/O error cannot be produced on demand for one file in `tmp_path`.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest

from sessionguard import CorruptionPolicy
from sessionguard.asgi import SessionMiddleware
from tests.trees import temp_files, tree

from .apps import (
    CountingFileStore,
    FlakyMemoryStore,
    SetCookie,
    cookie_header,
    session_set_cookie,
)
from .conftest import ClientFactory

UNAVAILABLE_BODY = CorruptionPolicy().unavailable_body


class TempFileFault:
    """Makes `os.<syscall>` fail with `errno` for session temp files while `active`.

    Temp-file descriptors are tracked from `os.open` to `os.close`, so a descriptor
    number reused later for the record's directory is never mistaken for one.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, syscall: str, code: int) -> None:
        self.active = True
        self.hits = 0
        self._fds: set[int] = set()
        real_open, real_close, real_call = os.open, os.close, getattr(os, syscall)

        def tracking_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
            fd = real_open(path, flags, mode, **kwargs)
            if os.fspath(path).endswith(".tmp"):
                self._fds.add(fd)
            return fd

        def tracking_close(fd: int) -> None:
            self._fds.discard(fd)
            real_close(fd)

        def failing_call(fd: int, *args: Any) -> Any:
            if self.active and fd in self._fds:
                self.hits += 1
                raise OSError(code, os.strerror(code))
            return real_call(fd, *args)

        monkeypatch.setattr(os, "open", tracking_open)
        monkeypatch.setattr(os, "close", tracking_close)
        monkeypatch.setattr(os, syscall, failing_call)


FAULTS = [
    pytest.param("write", errno.ENOSPC, id="write-ENOSPC"),
    pytest.param("write", errno.EIO, id="write-EIO"),
    pytest.param("fsync", errno.ENOSPC, id="fsync-ENOSPC"),
    pytest.param("fsync", errno.EIO, id="fsync-EIO"),
]


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.content == UNAVAILABLE_BODY
    for word in ("tamper", "invalid", "deleted"):
        assert word not in response.text.lower()
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(("syscall", "code"), FAULTS)
async def test_disk_fault_at_save_answers_503_and_keeps_old_data(
    make_client: ClientFactory,
    store: CountingFileStore,
    monkeypatch: pytest.MonkeyPatch,
    syscall: str,
    code: int,
) -> None:
    client = make_client()
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    path = store._locate(cookie.session_id)[1]
    with open(path, "rb") as file:
        stored = file.read()

    fault = TempFileFault(monkeypatch, syscall, code)
    response = await client.get("/count", cookie=cookie_header(cookie.value))

    assert fault.hits == 1
    _assert_unavailable(response)
    assert b"count" not in response.content  # the app's own body is not sent
    assert temp_files(store.directory) == []
    with open(path, "rb") as file:
        assert file.read() == stored

    fault.active = False
    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {"count": 1}
    response = await client.get("/count", cookie=cookie_header(cookie.value))
    assert response.json() == {"count": 2}


@pytest.mark.parametrize(("syscall", "code"), FAULTS[:2])
async def test_disk_fault_saving_a_new_session_answers_503_and_leaves_nothing(
    make_client: ClientFactory,
    store: CountingFileStore,
    monkeypatch: pytest.MonkeyPatch,
    syscall: str,
    code: int,
) -> None:
    client = make_client()
    before = tree(store.directory)
    fault = TempFileFault(monkeypatch, syscall, code)
    response = await client.get("/count")
    assert fault.hits == 1
    _assert_unavailable(response)
    # No record and no temp file: at most an empty fan-out directory and a lock file.
    assert [p for p, content in tree(store.directory).items() if content] == [
        p for p, content in before.items() if content
    ]


@pytest.fixture
def flaky_store() -> Iterator[FlakyMemoryStore]:
    memory = FlakyMemoryStore()
    yield memory
    memory.close()


async def _session_in(client_store: FlakyMemoryStore, make_client: ClientFactory) -> Any:
    client = make_client(store=client_store)
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    return client, cookie


async def test_store_unavailable_on_load_answers_503_without_calling_app(
    make_client: ClientFactory, flaky_store: FlakyMemoryStore
) -> None:
    client, cookie = await _session_in(flaky_store, make_client)
    flaky_store.failing = True
    calls = len(client.calls)
    response = await client.get("/count", cookie=cookie_header(cookie.value))
    _assert_unavailable(response)
    assert len(client.calls) == calls
    flaky_store.failing = False
    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {"count": 1}


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
async def test_asgi_save_failure_never_sends_the_apps_response(
    make_client: ClientFactory,
    store: CountingFileStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client()
    cookie: SetCookie | None = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    stack = client.app.build_middleware_stack()
    while not isinstance(stack, SessionMiddleware):
        stack = stack.app
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # The client stays connected: StreamingResponse's disconnect listener waits here
        # and is cancelled once the stream is done.
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/stream",
        "raw_path": b"/stream",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie_header(cookie.value).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    fault = TempFileFault(monkeypatch, "write", errno.ENOSPC)
    async with asyncio.timeout(10):
        await stack(scope, receive, send)
    assert fault.hits == 1
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 503
    assert sent[1]["body"] == UNAVAILABLE_BODY
    assert not sent[1].get("more_body", False)
    assert client.calls[-1] == "/stream"  # the app ran and streamed; none of it went out
