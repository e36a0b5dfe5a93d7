"""`sessionguard sessions` and `sessionguard revoke` on every store, addressed by TARGET."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from sessionguard.driver import run_sync
from sessionguard.ops import key_hash
from sessionguard.options import build_core
from sessionguard.policy import ErrorResponse
from sessionguard.session import Session
from sessionguard.stores import Store

from .conftest import RunCLI, Target

SECRET = "cli-user-commands-secret"
AUTH = ("--user-key", "user", "--secret-key", SECRET)


def log_in(store: Store, user: str) -> str:
    """A session of `user` written as the middleware writes it; its id."""
    core = build_core(SECRET, user_key="user")
    session = run_sync(core.open(None), store)
    assert isinstance(session, Session)
    session["user"] = user
    assert not isinstance(run_sync(core.commit(session), store), ErrorResponse)
    return session._sg.id


def test_sessions_lists_a_users_sessions_by_hash_and_never_by_id(
    target: Target, run: RunCLI
) -> None:
    alices = [log_in(target.store, "alice") for _ in range(2)]
    log_in(target.store, "bob")

    ran = run("sessions", target.url, "--user", "alice", *AUTH)

    assert ran.status == 0, ran.stderr
    assert sorted(line.split()[0] for line in ran.stdout.splitlines()[:-1]) == sorted(
        key_hash(k) for k in alices
    )
    assert ran.stdout.splitlines()[-1] == "sessions: 2 live session(s) of user 'alice'"
    assert not any(key in ran.stdout for key in alices)


def test_sessions_as_json(target: Target, run: RunCLI) -> None:
    key = log_in(target.store, "alice")

    ran = run("sessions", target.url, "--user", "alice", "--json", *AUTH)

    report = json.loads(ran.stdout)
    assert report["user"] == "alice"
    [shown] = report["sessions"]
    assert shown["session"] == key_hash(key)
    assert shown["created"].endswith("Z") and shown["expires"] > shown["created"]


def test_revoke_ends_all_but_the_one_kept(target: Target, run: RunCLI) -> None:
    kept, *others = [log_in(target.store, "alice") for _ in range(3)]
    bobs = log_in(target.store, "bob")

    ran = run("revoke", target.url, "--user", "alice", "--except", key_hash(kept), *AUTH)

    assert ran.status == 0, ran.stderr
    summary = f"revoke: ended 2 session(s) of user 'alice', kept {key_hash(kept)}"
    assert ran.stdout.strip() == summary
    assert all(target.store.load(k) is None for k in others)
    assert target.store.load(kept) is not None and target.store.load(bobs) is not None
    again = run("revoke", target.url, "--user", "alice", *AUTH)
    assert again.stdout.strip() == "revoke: ended 1 session(s) of user 'alice'"


def test_without_the_secret_or_the_user_key_it_refuses_with_status_2(
    target: Target, run: RunCLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SESSIONGUARD_SECRET_KEY", raising=False)
    monkeypatch.delenv("SESSIONGUARD_USER_KEY", raising=False)
    log_in(target.store, "alice")
    no_secret = run("revoke", target.url, "--user", "alice", "--user-key", "user")
    no_key = run("sessions", target.url, "--user", "alice", "--secret-key", SECRET)

    assert no_secret.status == 2 and "secret key" in no_secret.stderr
    assert no_key.status == 2 and "--user-key" in no_key.stderr


def test_records_signed_with_another_secret_are_not_the_users(target: Target, run: RunCLI) -> None:
    log_in(target.store, "alice")
    ran = run("revoke", target.url, "--user", "alice", "--user-key", "user", "--secret-key", "x")
    assert ran.stdout.strip() == "revoke: ended 0 session(s) of user 'alice'"


def test_a_reader_that_goes_away_ends_the_command_quietly(target: Target) -> None:
    # `sessionguard sessions ... | head`: the pipe is closed before the command writes.
    log_in(target.store, "alice")
    argv = ["sessions", target.url, "--user", "alice", "--json", *AUTH]
    with subprocess.Popen(
        [sys.executable, "-m", "sessionguard", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as command:
        assert command.stdout is not None and command.stderr is not None
        command.stdout.close()
        errors = command.stderr.read().decode()
        assert command.wait(timeout=60) == 128 + signal.SIGPIPE
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors


def test_sessions_shows_the_device_when_one_was_noted(target: Target, run: RunCLI) -> None:
    core = build_core(SECRET, user_key="user", record_devices=True)
    session = run_sync(core.open(None), target.store)
    assert isinstance(session, Session)
    session._sg.device = {"user_agent": "Firefox/130.0", "network": "203.0.113.0/24"}
    session["user"] = "alice"
    session.label_device("Work laptop")
    assert not isinstance(run_sync(core.commit(session), target.store), ErrorResponse)

    text = run("sessions", target.url, "--user", "alice", *AUTH).stdout.splitlines()[0]
    shown = json.loads(run("sessions", target.url, "--user", "alice", "--json", *AUTH).stdout)

    assert text.endswith("Work laptop  Firefox/130.0  203.0.113.0/24") and "last seen" in text
    [entry] = shown["sessions"]
    assert (entry["label"], entry["user_agent"], entry["network"]) == (
        "Work laptop",
        "Firefox/130.0",
        "203.0.113.0/24",
    )
