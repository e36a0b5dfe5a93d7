"""The commands on a store whose records are named by keyed hashes (`hashed_ids=`):
`sessions` and `revoke` find a user with `--id-key`, and `migrate` writes where an app
with hashed ids adopts from."""

from __future__ import annotations

import pickle
from pathlib import Path

from sessionguard.driver import run_sync
from sessionguard.hashedids import HashedIds
from sessionguard.legacy import LegacyCookie
from sessionguard.options import build_core
from sessionguard.policy import ErrorResponse
from sessionguard.session import Session
from sessionguard.stores import FileStore
from sessionguard.stores.base import BaseStore
from sessionguard.users import UserSessions

from .conftest import RunCLI, Target

SECRET = "cli-hashed-ids-secret"
ID_KEY = "an-id-key-of-at-least-thirty-two-characters"
AUTH = ("--user", "alice", "--user-key", "user", "--secret-key", SECRET)


def log_in(target: Target) -> str:
    """A session of alice, written by a middleware with hashed ids; its cookie value."""
    core = build_core(SECRET, user_key="user", hashed_ids=HashedIds(ID_KEY))
    session = run_sync(core.open(None), target.store)
    assert isinstance(session, Session)
    session["user"] = "alice"
    headers = run_sync(core.commit(session), target.store)
    assert not isinstance(headers, ErrorResponse)
    return headers[0].split(";", 1)[0].removeprefix("session=")


def test_sessions_and_revoke_find_the_user_only_with_the_id_key(
    target: Target, run: RunCLI
) -> None:
    cookies = [log_in(target) for _ in range(2)]
    assert isinstance(target.store, BaseStore)
    users = UserSessions(target.store, SECRET, user_key="user", hashed_ids=HashedIds(ID_KEY))
    kept = users.hash_of(cookies[0])

    blind = run("sessions", target.url, *AUTH)
    seen = run("sessions", target.url, *AUTH, "--id-key", ID_KEY)
    ended = run("revoke", target.url, *AUTH, "--id-key", ID_KEY, "--except", kept)

    assert blind.stdout.splitlines()[-1] == "sessions: 0 live session(s) of user 'alice'"
    assert seen.stdout.splitlines()[-1] == "sessions: 2 live session(s) of user 'alice'"
    assert sorted(line.split()[0] for line in seen.stdout.splitlines()[:-1]) == sorted(
        users.hash_of(c) for c in cookies
    )
    assert ended.stdout.strip() == f"revoke: ended 1 session(s) of user 'alice', kept {kept}"
    assert [s.session for s in users.sessions("alice")] == [kept]


def test_migrate_with_the_id_key_is_adopted_by_an_app_with_hashed_ids(
    tmp_path: Path, run: RunCLI
) -> None:
    old_id = "abcdefghijklmnopqrstuvwxyz012345"
    pickles = tmp_path / "old"
    pickles.mkdir()
    (pickles / old_id).write_bytes(pickle.dumps({"user": "alice"}))
    store_dir = tmp_path / "sessions"

    ran = run(
        "migrate", "--from", "pickle-dir", str(pickles), "--to", str(store_dir), "--trust-pickle",
        "--secret-key", SECRET, "--id-key", ID_KEY, "--cookie-name", "sid",
    )  # fmt: skip

    assert ran.status == 0, ran.stderr
    store = FileStore(store_dir)
    try:
        [found] = list(store.scan())
        assert old_id not in found.key
        core = build_core(SECRET, hashed_ids=HashedIds(ID_KEY), legacy=LegacyCookie("sid"))
        session = run_sync(core.open(f"sid={old_id}"), store)
        assert isinstance(session, Session) and dict(session) == {"user": "alice"}
        headers = run_sync(core.commit(session), store)
        assert not isinstance(headers, ErrorResponse) and headers[0].startswith("session=")
        # The adoption marker left under the old id names the new record by its hash.
        stored = [(s.key, s.record.payload) for s in store.scan()]
        assert len(stored) == 2
        assert not any(session._sg.id in k or session._sg.id.encode() in p for k, p in stored)
    finally:
        store.close()
