"""`--secret-key`: `scan` and `purge --corrupt` also check record signatures, and `migrate`
signs what it writes. Without it the commands check integrity only, so a forgery (intact
bytes, wrong signature) is told apart from damage only by someone who holds the secret.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sessionguard.codec import Envelope, decode, encode, record_keys
from sessionguard.legacy import legacy_key
from sessionguard.stores import FileStore

from .plant import key

if TYPE_CHECKING:
    from tests.cli.conftest import RunCLI

SECRET = "the-app-secret"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """Two records signed with the app's key and one forged with another key."""
    root = tmp_path / "sessions"
    store = FileStore(root)
    now = time.time()
    (app_key,) = record_keys([SECRET.encode()])
    for i in range(2):
        payload = encode(Envelope({"user_id": i}, now), key=app_key)
        store.save(key("signed", i), payload, expires_at=now + 3600)
    forged = encode(Envelope({"role": "admin"}, now), key=b"not-the-app-key" * 2)
    store.save(key("forged", 0), forged, expires_at=now + 3600)
    store.close()
    return root


def test_scan_without_the_secret_sees_only_intact_records(directory: Path, run: RunCLI) -> None:
    ran = run("scan", str(directory), "--json")

    assert ran.status == 0
    assert json.loads(ran.stdout)["live"] == 3


@pytest.mark.parametrize("how", ["option", "environment"])
def test_scan_with_the_secret_reports_the_forgery(
    directory: Path, run: RunCLI, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "option":
        ran = run("scan", str(directory), "--json", "--secret-key", SECRET)
    else:
        monkeypatch.setenv("SESSIONGUARD_SECRET_KEY", SECRET)
        ran = run("scan", str(directory), "--json")

    assert ran.status == 1
    report = json.loads(ran.stdout)
    assert (report["live"], report["corrupt_by_reason"]["bad_signature"]) == (2, 1)


def test_purge_corrupt_with_the_secret_removes_only_the_forgery(
    directory: Path, run: RunCLI
) -> None:
    ran = run(
        "purge", str(directory), "--corrupt", "--secret-key", "retired", "--secret-key", SECRET
    )

    assert ran.status == 0, ran.stderr
    store = FileStore(directory)
    assert store.load(key("forged", 0)) is None
    assert all(store.load(key("signed", i)) is not None for i in range(2))


def test_migrate_with_the_secret_writes_signed_records(tmp_path: Path, run: RunCLI) -> None:
    source = tmp_path / "old"
    source.mkdir()
    old_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    (source / old_id).write_bytes(pickle.dumps({"user_id": 9}))
    target = tmp_path / "sessions"

    ran = run(
        "migrate",
        "--from",
        "pickle-dir",
        str(source),
        "--to",
        str(target),
        "--trust-pickle",
        "--secret-key",
        SECRET,
    )

    assert ran.status == 0, ran.stderr
    record = FileStore(target).load(legacy_key("session", old_id))
    assert record is not None
    keys = record_keys([SECRET.encode()])
    # What an app with unsigned_records="reject" reads: only a record signed by its key.
    assert decode(record.payload, keys=keys, accept_unsigned=False).data == {"user_id": 9}
