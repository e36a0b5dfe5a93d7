"""The commands on a store whose records are encrypted (`cipher=`): without the cipher key
they check integrity only and never call the store corrupt; with the keys they read it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from sessionguard.cipher import RecordCipher
from sessionguard.codec import decode, record_keys
from sessionguard.driver import run_sync
from sessionguard.options import build_core
from sessionguard.policy import ErrorResponse
from sessionguard.session import Session
from sessionguard.stores import FileStore

from .conftest import RunCLI, Target

SECRET = "cli-encrypted-secret"
KEY = RecordCipher.new_key()


def key_text(key: bytes) -> str:
    """A cipher key on a command line: text of at least 32 characters."""
    return base64.b64encode(key).decode()


def save_encrypted(target: Target, key: str, n: int = 3) -> None:
    core = build_core(SECRET, cipher=RecordCipher([key]))
    for i in range(n):
        session = run_sync(core.open(None), target.store)
        assert isinstance(session, Session)
        session["i"] = i
        assert not isinstance(run_sync(core.commit(session), target.store), ErrorResponse)


def test_scan_without_the_cipher_key_finds_them_intact(target: Target, run: RunCLI) -> None:
    save_encrypted(target, key_text(KEY))
    report = json.loads(run("scan", target.url, "--json").stdout)
    assert (report["records"], report["corrupt"]) == (3, 0)


def test_scan_with_the_keys_reads_them_and_a_wrong_key_is_unknown_key(
    target: Target, run: RunCLI
) -> None:
    save_encrypted(target, key_text(KEY))
    right = run("scan", target.url, "--json", "--secret-key", SECRET, "--cipher-key", key_text(KEY))
    assert json.loads(right.stdout)["corrupt"] == 0 and right.status == 0
    other = key_text(RecordCipher.new_key())
    wrong = run("scan", target.url, "--json", "--cipher-key", other)
    assert wrong.status == 1
    by_reason = json.loads(wrong.stdout)["corrupt_by_reason"]
    assert {reason: n for reason, n in by_reason.items() if n} == {"unknown_key": 3}


def test_purge_corrupt_without_the_cipher_key_removes_no_encrypted_record(
    target: Target, run: RunCLI
) -> None:
    save_encrypted(target, key_text(KEY))
    ran = run("purge", target.url, "--corrupt")
    assert ran.status == 0, ran.stderr
    assert len(target.store_scan()) == 3


def test_migrate_encrypts_what_it_writes_with_the_cipher_key(tmp_path: Path, run: RunCLI) -> None:
    pickles = tmp_path / "old"
    pickles.mkdir()
    import pickle

    (pickles / "abcdefghijklmnopqrstuvwxyz012345").write_bytes(pickle.dumps({"user": "alice"}))
    store_dir = tmp_path / "sessions"
    ran = run(
        "migrate", "--from", "pickle-dir", str(pickles), "--to", str(store_dir), "--trust-pickle",
        "--secret-key", SECRET, "--cipher-key", key_text(KEY),
    )  # fmt: skip
    assert ran.status == 0, ran.stderr
    store = FileStore(store_dir)
    [found] = list(store.scan())
    assert b"alice" not in found.record.payload
    keys = record_keys([SECRET.encode()])
    envelope = decode(found.record.payload, keys=keys, cipher=RecordCipher([key_text(KEY)]))
    assert envelope.data == {"user": "alice"}
    store.close()


def test_sessions_and_revoke_read_an_encrypted_store_with_the_cipher_key(
    target: Target, run: RunCLI
) -> None:
    core = build_core(SECRET, user_key="user", cipher=RecordCipher([key_text(KEY)]))
    session = run_sync(core.open(None), target.store)
    assert isinstance(session, Session)
    session["user"] = "alice"
    assert not isinstance(run_sync(core.commit(session), target.store), ErrorResponse)
    auth = ("--user", "alice", "--user-key", "user", "--secret-key", SECRET)

    blind = run("sessions", target.url, *auth)
    seen = run("sessions", target.url, *auth, "--cipher-key", key_text(KEY))
    ended = run("revoke", target.url, *auth, "--cipher-key", key_text(KEY))

    assert blind.stdout.splitlines()[-1] == "sessions: 0 live session(s) of user 'alice'"
    assert seen.stdout.splitlines()[-1] == "sessions: 1 live session(s) of user 'alice'"
    assert ended.stdout.strip() == "revoke: ended 1 session(s) of user 'alice'"
