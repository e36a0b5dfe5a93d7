"""`sessionguard migrate --from quixote-dir`: the sessions of a session3
`DirectorySessionStore`, written by the real store, copied where `SessionGuardStore` finds
them (under the same ids, so users keep their sessions when the app switches stores)."""

from __future__ import annotations

import io
import os
import pickle
import time
from pathlib import Path

import pytest
from session3.store.DirectorySessionStore import DirectorySessionStore

from sessionguard.cli import main
from sessionguard.codec import record_keys
from sessionguard.migrate import run_migration
from sessionguard.quixote import SessionGuardStore
from sessionguard.stores import FileStore, MemoryStore

from .conftest import SECRET, AppDictSession, AppSession, new_session

ADA, BOB, OLD, EMPTY, TORN, ALIEN, MISSING = (
    "adaADAada01",
    "bobBOBbob02",
    "oldOLDold03",
    "emptyEMPTY4",
    "tornTORNto5",
    "alienALIEN6",
    "missingMIS7",
)


class Alien:
    """A class the migrating process can import but whose state cannot be stored."""

    def __init__(self) -> None:
        self.id = ALIEN
        self.callback = print


@pytest.fixture
def quixote_dir(tmp_path: Path, in_request: object) -> Path:
    directory = tmp_path / "quixote-sessions"
    old = DirectorySessionStore(str(directory), create=True)
    ada = new_session(AppSession, ADA, user="ada", cart=["tea", "jam"])
    token = ada.create_form_token()
    ada.token = token
    old.save_session(ada)
    bob = new_session(AppDictSession, BOB, user="bob")
    bob["basket"] = {"apples": 3}
    old.save_session(bob)
    old.save_session(new_session(AppSession, OLD, user="gone"))
    month_ago = time.time() - 30 * 24 * 3600
    os.utime(directory / OLD, (month_ago, month_ago))
    (directory / EMPTY).write_bytes(b"")  # what a writer killed mid-save leaves
    (directory / TORN).write_bytes(pickle.dumps(ada, 4)[:40])
    (directory / ALIEN).write_bytes(pickle.dumps(Alien(), 4))
    # A session whose class the migrating process cannot import.
    module = AppSession.__module__.encode()
    elsewhere = module[: -len(b"conftest")] + b"nomodule"
    (directory / MISSING).write_bytes(pickle.dumps(ada, 4).replace(module, elsewhere))
    return directory


def _migrate(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    out = io.StringIO()
    status = main(["migrate", *argv], out=out)
    return status, out.getvalue(), capsys.readouterr().err


def test_migrate_copies_the_sessions_under_their_ids(
    quixote_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "sessions"

    status, out, err = _migrate(
        "--from", "quixote-dir", str(quixote_dir), "--to", str(target),
        "--trust-pickle", "--secret-key", SECRET, capsys=capsys,
    )  # fmt: skip

    assert status == 0, err
    assert out.strip() == (
        "copied 2 session(s); skipped 1 expired, 0 empty, 4 undecodable "
        "(empty: 1, truncated: 1, undecodable: 1, unencodable: 1)"
    )
    files = FileStore(target)
    store = SessionGuardStore(files, secret_key=SECRET, session_class=AppSession)
    ada = store.load_session(ADA)
    assert type(ada) is AppSession and ada.user == "ada" and ada.cart == ["tea", "jam"]
    assert ada.has_form_token(ada.token) and ada.get_remote_address() == "192.0.2.7"
    dict_store = SessionGuardStore(files, secret_key=SECRET, session_class=AppDictSession)
    bob = dict_store.load_session(BOB)
    assert bob.user == "bob" and dict(bob) == {"basket": {"apples": 3}}
    assert [store.load_session(sid) for sid in (OLD, EMPTY, TORN, ALIEN, MISSING)] == [None] * 5
    files.close()


def test_migrate_needs_trust_pickle_and_the_secret(
    quixote_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = str(tmp_path / "sessions")
    args = ("--from", "quixote-dir", str(quixote_dir), "--to", target)

    untrusted = _migrate(*args, "--secret-key", SECRET, capsys=capsys)
    unsigned = _migrate(*args, "--trust-pickle", capsys=capsys)

    assert untrusted[0] == 2 and "--trust-pickle" in untrusted[2]
    assert unsigned[0] == 2 and "--secret-key" in unsigned[2]


def test_the_migrated_session_is_what_the_directory_store_held(quixote_dir: Path) -> None:
    target = MemoryStore()
    sign_with = record_keys([SECRET.encode()])[0]

    report = run_migration(
        "quixote-dir", quixote_dir, target, trust_pickle=True, sign_with=sign_with
    )

    assert report.copied == 2
    old = DirectorySessionStore(str(quixote_dir))
    for sid, session_class in ((ADA, AppSession), (BOB, AppDictSession)):
        new = SessionGuardStore(target, secret_key=SECRET, session_class=session_class)
        was, now = old.load_session(sid), new.load_session(sid)
        assert type(now) is type(was) and vars(now) == vars(was)
