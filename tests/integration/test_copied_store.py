"""A session directory restored without its files' times, served again by real servers.

gunicorn (WSGI) or uvicorn (ASGI) writes sessions; the server is stopped; the directory
is replaced by a `cp -r` copy of itself (every mtime becomes "now"), one record is then
truncated in place by another program; a new server serves the copy. The intact
sessions keep their ids and data, the damaged one is reported as corrupt (log line, fresh
session) rather than as expired, and `python -m sessionguard scan` exits 1 on it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from sessionguard.stores.file import FileStore

from .conftest import (
    ServerKind,
    SessionEnv,
    StartServer,
    cookie_value,
    session_cookie,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
def test_a_restored_copy_keeps_every_session_and_reports_the_damaged_one(
    kind: ServerKind, start_server: StartServer, session_env: SessionEnv
) -> None:
    server = start_server(kind, workers=2)
    cookies: dict[str, str] = {}
    for user in ("alice", "bob", "carol"):
        # A client each: no cookie jar may carry one user's cookie into the next one's request.
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            cookies[user] = cookie_value(client.get("/init"))
            response = client.get(
                "/set", params={"k": "user", "v": user}, headers=session_cookie(cookies[user])
            )
            assert response.json()["data"] == {"init": "1", "user": user}
    server.stop()

    original = session_env.store_dir.with_name("store-original")
    session_env.store_dir.rename(original)
    subprocess.run(["cp", "-r", str(original), str(session_env.store_dir)], check=True)
    carol = FileStore(session_env.store_dir)._locate(cookies["carol"].split(".")[0])[1]
    with open(carol, "r+b") as file:  # a foreign writer cut it short, in place
        file.truncate(40)

    scan = subprocess.run(
        [sys.executable, "-m", "sessionguard", "scan", str(session_env.store_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scan.returncode == 1, scan.stderr
    report = json.loads(scan.stdout)
    assert (report["live"], report["expired"], report["corrupt"]) == (2, 0, 1)

    server = start_server(kind, workers=2)
    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        for user in ("alice", "bob"):
            body = client.get("/get", headers=session_cookie(cookies[user])).json()
            assert (body["id"], body["is_new"]) == (cookies[user].split(".")[0], False)
            assert body["data"] == {"init": "1", "user": user}
        body = client.get("/get", headers=session_cookie(cookies["carol"])).json()
        assert body["is_new"] and body["data"] == {}
    assert "corrupt session record" in server.log() and "(truncated)" in server.log()
