"""`sessionguard migrate` is wired to `sessionguard.migrate.run_migration`; the readers
themselves are tested in tests/migrate/. Here: arguments, exit statuses, the pickle gate."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from sessionguard.codec import decode
from sessionguard.legacy import legacy_key
from sessionguard.stores import FileStore

from .plant import Pickled

if TYPE_CHECKING:
    from tests.cli.conftest import RunCLI

IDS = [f"0123456789abcdef{i:04d}" for i in range(3)]


def pickle_dir(root: Path, marker: Path | None = None) -> Path:
    source = root / "old-sessions"
    source.mkdir()
    for i, legacy_id in enumerate(IDS):
        data: dict[str, object] = {"user_id": i}
        if marker is not None:
            data["x"] = Pickled(str(marker))
        (source / legacy_id).write_bytes(pickle.dumps(data))
    return source


def test_migrate_copies_sessions_where_adoption_finds_them(tmp_path: Path, run: RunCLI) -> None:
    source = pickle_dir(tmp_path)
    target = tmp_path / "sessions"

    refused = run("migrate", "--from", "pickle-dir", str(source), "--to", str(target))
    ran = run("migrate", "--from", "pickle-dir", str(source), "--to", str(target), "--trust-pickle")

    assert refused.status == 2 and "--trust-pickle" in refused.stderr
    assert ran.status == 0, ran.stderr
    assert ran.stdout.startswith("copied 3 session(s)")
    store = FileStore(target)
    for i, legacy_id in enumerate(IDS):
        record = store.load(legacy_key("session", legacy_id))
        assert record is not None and decode(record.payload).data == {"user_id": i}
    store.close()


def test_migrate_never_unpickles_without_trust_pickle(tmp_path: Path, run: RunCLI) -> None:
    marker = tmp_path / "unpickled"
    source = pickle_dir(tmp_path, marker)

    ran = run("migrate", "--from", "pickle-dir", str(source), "--to", str(tmp_path / "s"))

    assert ran.status == 2
    assert "--trust-pickle" in ran.stderr
    assert not marker.exists()


def test_migrate_rejects_an_unknown_source_kind(tmp_path: Path, run: RunCLI) -> None:
    ran = run("migrate", "--from", "rails-cookie", str(tmp_path), "--to", str(tmp_path / "s"))

    assert ran.status == 2
    assert "unknown source kind 'rails-cookie'" in ran.stderr
    assert "django-file" in ran.stderr
    assert run("migrate", "--to", str(tmp_path / "s")).status == 2  # --from is required
