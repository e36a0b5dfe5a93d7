"""The routes both torture apps serve, written once against a `Session`.

Every route answers JSON `{"id": ..., "is_new": ..., "data": {...}}`: the session's id
and contents as this request saw them (after its own change), so a test can tell
whether a request worked on the session its cookie named or was given a fresh one.

* `/init`              sets `init=1`, creating the session
* `/set?k=K&v=V`       sets `session[K] = V`
* `/delete?k=K`        removes `K` if present
* `/get`               changes nothing
* `/login?v=USER`      sets `user`, then `session.regenerate()`; with `carry=1`,
                       `session.regenerate(carry_in_flight=True)`

Any route also takes `hold=NAME` (only when `SESSIONGUARD_TEST_HOLD_DIR` is set): once
the session is loaded the request creates `<hold dir>/NAME.loaded`, then waits, at most
`HOLD_TIMEOUT` seconds, for the test to create `<hold dir>/NAME.go` before it changes
anything. That is how a test parks a request between its load and its save.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs

from sessionguard.session import Session
from sessionguard.stores.file import FileStore

STORE_ENV = "SESSIONGUARD_TEST_STORE"
SECRET_ENV = "SESSIONGUARD_TEST_SECRET"
HOLD_ENV = "SESSIONGUARD_TEST_HOLD_DIR"
HOLD_TIMEOUT = 10.0
_HOLD_POLL = 0.005
_HOLD_NAME = re.compile(r"[a-z0-9-]{1,32}")


def store_from_env() -> FileStore:
    # durable=False: the suite tests atomicity against crashes, not power loss.
    return FileStore(os.environ[STORE_ENV], durable=False)


def secret_from_env() -> str:
    return os.environ[SECRET_ENV]


def log_to_stderr() -> None:
    """Send sessionguard's warnings and errors to stderr, where the test reads the server log."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


def parse_query(query: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(query).items()}


def hold_markers(name: str) -> tuple[Path, Path] | None:
    """Return the (loaded, go) marker paths for `hold=name`, or `None` if holding is off."""
    directory = os.environ.get(HOLD_ENV)
    if not directory or not _HOLD_NAME.fullmatch(name):
        return None
    return Path(directory, f"{name}.loaded"), Path(directory, f"{name}.go")


def hold(name: str) -> bool:
    """Block until the test releases `name`; return `False` if it did not in time."""
    markers = hold_markers(name)
    if markers is None:
        return False
    loaded, go = markers
    loaded.touch()
    deadline = time.monotonic() + HOLD_TIMEOUT
    while not go.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(_HOLD_POLL)
    return True


async def ahold(name: str) -> bool:
    """`hold` for the event loop."""
    markers = hold_markers(name)
    if markers is None:
        return False
    loaded, go = markers
    loaded.touch()
    deadline = time.monotonic() + HOLD_TIMEOUT
    while not go.exists():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_HOLD_POLL)
    return True


def handle(session: Session, path: str, params: Mapping[str, str]) -> tuple[int, bytes]:
    """Apply the route to the session; return the status and the JSON body."""
    if path in ("/set", "/delete") and "k" not in params:
        return 400, b'{"error": "missing k"}'
    match path:
        case "/init":
            session["init"] = "1"
        case "/set":
            session[params["k"]] = params.get("v", "")
        case "/delete":
            session.pop(params["k"], None)
        case "/get":
            pass
        case "/login":
            session["user"] = params.get("v", "alice")
            session.regenerate(carry_in_flight=params.get("carry") == "1")
        case _:
            return 404, b'{"error": "no such route"}'
    body = {"id": session._sg.id, "is_new": session.is_new, "data": dict(session)}
    return 200, json.dumps(body).encode()
