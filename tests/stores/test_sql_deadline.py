"""`SQLStore` keeps each deadline in its `expires_at` column, so a SQL dump reloaded into
another database (here SQLite's own `.dump`, through `sqlite3.Connection.iterdump`) keeps
every session until its real deadline, and not longer."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sessionguard.stores.sql import SQLStore

LIVE = "0123456789abcdef0123456789abcdef01234567"
SHORT = "fedcba9876543210fedcba9876543210fedcba98"


def test_a_dump_reloaded_elsewhere_keeps_every_deadline(tmp_path: Path) -> None:
    original = SQLStore(f"sqlite:///{tmp_path / 'original.db'}")
    deadline, short = time.time() + 3600, time.time() + 0.5
    original.save(LIVE, b"live", expires_at=deadline)
    original.save(SHORT, b"short", expires_at=short)
    original.close()
    source = sqlite3.connect(tmp_path / "original.db")
    reloaded = sqlite3.connect(tmp_path / "reloaded.db")
    reloaded.executescript("\n".join(source.iterdump()))
    source.close()
    reloaded.close()

    store = SQLStore(f"sqlite:///{tmp_path / 'reloaded.db'}")
    record = store.load(LIVE)
    assert record is not None and (record.payload, record.expires_at) == (b"live", deadline)
    assert store.load(SHORT) is not None
    time.sleep(max(0.0, short - time.time()) + 0.1)
    assert store.load(SHORT) is None
    store.close()
