"""Many processes, one session: real gunicorn and uvicorn servers under concurrent writers.

Each test drives one session from many clients at once and checks that no write was
lost, that no request failed, that no response re-issued the session under another id,
and that the server logged no traceback, decode error or corruption.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionguard.stores import Record
from sessionguard.stores.file import FileStore

from .apps import asgi_app
from .apps.client import describe, ignoring_cookie_jar
from .conftest import (
    Op,
    Result,
    ServerKind,
    SessionEnv,
    StartClients,
    StartServer,
    assert_clean_server_log,
    by_status,
    cookie_value,
    session_cookie,
)

pytestmark = pytest.mark.integration

WAIT_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0


def set_ops(client: int, count: int, *, hold_first: bool = False) -> list[Op]:
    """`count` requests setting distinct keys; with `hold_first`, the first is held
    (`hold=first-<client>`) between its load and its save until the test releases it."""
    ops: list[Op] = [
        ("POST", "/set", {"k": f"c{client}-{j}", "v": f"{client}:{j}"}) for j in range(count)
    ]
    if hold_first and ops:
        ops[0][2]["hold"] = first_hold(client)
    return ops


def first_hold(client: int) -> str:
    return f"first-{client}"


def expected_sets(clients: int, count: int) -> dict[str, str]:
    return {f"c{i}-{j}": f"{i}:{j}" for i in range(clients) for j in range(count)}


def new_client(base_url: str, **kwargs: Any) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, timeout=REQUEST_TIMEOUT, cookies=ignoring_cookie_jar(), **kwargs
    )


def new_async_client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT, cookies=ignoring_cookie_jar(), **kwargs
    )


async def call(client: httpx.AsyncClient, cookie: str | None, path: str, **params: str) -> Result:
    headers = session_cookie(cookie) if cookie else {}
    method = "GET" if path == "/get" else "POST"
    response = await client.request(method, path, params=params, headers=headers)
    return {"path": path, "params": params, **describe(response)}


def init_session(base_url: str) -> tuple[str, str]:
    """Create a session; return its signed cookie value and its id."""
    with new_client(base_url) as client:
        response = client.post("/init")
    assert response.status_code == 200, response.text
    value = cookie_value(response)
    return value, value.partition(".")[0]


def read_session(base_url: str, cookie: str) -> dict[str, Any]:
    with new_client(base_url) as client:
        response = client.get("/get", headers=session_cookie(cookie))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def failed(results: Sequence[Result], session_id: str) -> list[Result]:
    """Responses that were not a 200 setting exactly the session's own cookie."""
    return [r for r in results if r["status"] != 200 or r["cookie_ids"] != [session_id]]


async def test_gunicorn_sync_workers_keep_every_concurrent_write(
    start_server: StartServer, start_clients: StartClients, session_env: SessionEnv
) -> None:
    clients, requests = 4, 50  # one worker per client: each holds one request at first
    server = start_server("gunicorn", workers=4)
    cookie, session_id = init_session(server.base_url)

    processes = start_clients(
        server.base_url,
        cookie,
        [set_ops(i, requests, hold_first=True) for i in range(clients)],
    )
    await release_together(session_env.hold_dir, [first_hold(i) for i in range(clients)])
    results = [result for process in processes for result in process.results()]
    data = read_session(server.base_url, cookie)
    server.stop()

    assert by_status(results) == {200: clients * requests}
    assert failed(results, session_id) == []
    assert data == {"init": "1", **expected_sets(clients, requests)}
    assert_clean_server_log(server.log())


async def hammer(
    client: httpx.AsyncClient, cookie: str, tasks: int, requests: int, *, hold_first: bool = False
) -> list[Result]:
    """`tasks` concurrent tasks, each setting `requests` distinct keys one after another
    (the first one held as `first-<task>` with `hold_first`: see `set_ops`)."""

    async def run(task: int) -> list[Result]:
        return [
            await call(client, cookie, path, **params)
            for _, path, params in set_ops(task, requests, hold_first=hold_first)
        ]

    batches = await asyncio.gather(*(run(task) for task in range(tasks)))
    return [result for batch in batches for result in batch]


async def test_uvicorn_workers_keep_every_concurrent_write(
    start_server: StartServer, session_env: SessionEnv
) -> None:
    tasks, requests = 16, 25
    server = start_server("uvicorn", workers=2)
    cookie, session_id = init_session(server.base_url)

    async with new_async_client(server.base_url) as client:
        hammering = asyncio.create_task(hammer(client, cookie, tasks, requests, hold_first=True))
        await release_together(session_env.hold_dir, [first_hold(t) for t in range(tasks)])
        results = await hammering
    data = read_session(server.base_url, cookie)
    server.stop()

    assert by_status(results) == {200: tasks * requests}
    assert failed(results, session_id) == []
    assert data == {"init": "1", **expected_sets(tasks, requests)}
    assert_clean_server_log(server.log())


class LoadTogetherFileStore(FileStore):
    """A real FileStore whose async loads, while `together` is set, each wait until that
    many have been made: then every request of a round loads before any of them saves."""

    together: asyncio.Barrier | None = None

    async def aload(self, key: str) -> Record | None:
        record = await super().aload(key)
        if self.together is not None:
            await asyncio.wait_for(self.together.wait(), WAIT_TIMEOUT)
        return record


async def test_asgi_app_in_process_keeps_every_concurrent_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks, requests = 32, 8
    store = LoadTogetherFileStore(tmp_path, durable=False)
    transport = httpx.ASGITransport(asgi_app.build_app(store, "in-process-secret"))
    try:
        async with new_async_client("http://testserver", transport=transport) as client:
            response = await client.post("/init")
            cookie = cookie_value(response)
            session_id = cookie.partition(".")[0]
            # Each task sends its requests one after another, and each request loads once:
            # the n-th requests of all the tasks load the session before any of them saves.
            store.together = asyncio.Barrier(tasks)
            results = await hammer(client, cookie, tasks, requests)
            store.together = None
            final = await call(client, cookie, "/get")
    finally:
        await store.aclose()

    assert by_status(results) == {200: tasks * requests}
    assert failed(results, session_id) == []
    assert final["body"]["data"] == {"init": "1", **expected_sets(tasks, requests)}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- a regenerate in flight ------------------------------------------------------------


def churn_ops(client: int, count: int) -> list[Op]:
    """Set `count` keys; after every third, delete the key set two steps before."""
    ops: list[Op] = []
    for j in range(count):
        ops.append(("POST", "/set", {"k": f"c{client}-{j}", "v": f"{client}:{j}"}))
        if j % 3 == 2:
            ops.append(("POST", "/delete", {"k": f"c{client}-{j - 2}"}))
    return ops


def replay(results: Sequence[Result], old_id: str, new_id: str) -> dict[str, str]:
    """What one client's requests on the old cookie must have left in the new session.

    A request that loaded the old session (body id == old id) either saved onto it before
    the regenerate moved it (its response re-sets the old cookie, and the regenerate
    carries the change over) or found the forward pointer at save time and merged into
    the new session (its response sets no cookie). Either way its change must be in the
    new session. A request that *opened* after the move gets a fresh session under a
    third id, and its change must not be.
    """
    state: dict[str, str] = {}
    fresh_seen = False
    for result in results:
        body, params, ids = result["body"], result["params"], result["cookie_ids"]
        assert result["status"] == 200, result
        if body["is_new"]:
            fresh_seen = True
            assert body["id"] not in (old_id, new_id), result
            expected_ids = [body["id"]] if result["path"] == "/set" else []
            assert ids == expected_ids, result
            continue
        # Requests of one client are sequential, so once one opened after the move, all
        # later ones did too.
        assert not fresh_seen, result
        assert body["id"] == old_id and ids in ([old_id], []), result
        if result["path"] == "/set":
            state[params["k"]] = params["v"]
        else:
            state.pop(params["k"], None)
    return state


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def release_together(hold_dir: Path, names: Sequence[str]) -> None:
    """Wait until every request held as one of `names` has loaded the session, then let
    them all go on: each of them loaded it before any of them saved."""
    try:
        await wait_for(
            lambda: all((hold_dir / f"{name}.loaded").exists() for name in names),
            f"the {len(names)} held requests to load the session",
        )
    finally:
        for name in names:
            (hold_dir / f"{name}.go").touch()


HOLDS = ("h-set", "h-delete")


# gunicorn: 6 sync workers, as the two held requests each occupy one.
@pytest.mark.parametrize(("kind", "workers"), [("gunicorn", 6), ("uvicorn", 2)])
async def test_regenerate_with_carry_carries_in_flight_writes_and_forks_later_requests(
    kind: ServerKind,
    workers: int,
    start_server: StartServer,
    start_clients: StartClients,
    session_env: SessionEnv,
) -> None:
    server = start_server(kind, workers=workers)
    old, old_id = init_session(server.base_url)
    hold_dir = session_env.hold_dir

    async with new_async_client(server.base_url) as client:
        for key in ("pre-a", "pre-b"):
            assert (await call(client, old, "/set", k=key, v="1"))["status"] == 200
        background = start_clients(server.base_url, old, [churn_ops(i, 24) for i in range(3)])
        # Two requests park between loading the old session and saving their change.
        held = [
            asyncio.create_task(call(client, old, "/set", k="held-set", v="x", hold="h-set")),
            asyncio.create_task(call(client, old, "/delete", k="pre-a", hold="h-delete")),
        ]
        try:
            await wait_for(
                lambda: all((hold_dir / f"{name}.loaded").exists() for name in HOLDS),
                "the held requests to load the session",
            )
            await wait_for(
                lambda: all(process.completed() >= 4 for process in background),
                "the background clients to get going",
            )
            login = await call(client, old, "/login", v="alice", carry="1")
        finally:
            for name in HOLDS:
                (hold_dir / f"{name}.go").touch()
            held_results = await asyncio.gather(*held, return_exceptions=True)
        late_get = await call(client, old, "/get")
        late_set = await call(client, old, "/set", k="late", v="1")

        background_results = [process.results() for process in background]
        assert login["status"] == 200, login
        [new_id] = login["cookie_ids"]
        [new] = login["cookies"]
        final = await call(client, new, "/get")
        late_data = read_session(server.base_url, late_set["cookies"][0])
    server.stop()

    assert new_id != old_id and login["body"]["id"] == new_id
    # Loaded before the move, saved after it: merged into the new session, no cookie sent.
    for result in held_results:
        assert isinstance(result, dict) and result["status"] == 200, result
        assert (result["body"]["id"], result["body"]["is_new"]) == (old_id, False), result
        assert result["cookie_ids"] == [], result
    # Opened after the move with the old cookie: a fresh, empty session, never the new one.
    assert late_get["status"] == 200 and late_get["cookie_ids"] == []
    assert late_get["body"]["is_new"] and late_get["body"]["data"] == {}
    [late_id] = late_set["cookie_ids"]
    assert late_id not in (old_id, new_id) and late_data == {"late": "1"}

    expected = {"init": "1", "pre-b": "1", "user": "alice", "held-set": "x"}
    for results in background_results:
        expected.update(replay(results, old_id, new_id))
    assert final["status"] == 200 and final["body"]["data"] == expected
    assert_clean_server_log(server.log())
