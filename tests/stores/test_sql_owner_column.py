"""A sessions table made by an earlier sessionguard, which had no `owner` column, gets
the column and its index when the store opens it: its sessions stay, and the per-user
index works from then on. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from sessionguard.stores.sql import SQLStore
from tests.clock import FakeClock

KEY = "0123456789abcdef0123456789abcdef01234567"


def old_table(url: str, name: str, now: float) -> None:
    """The table as sessionguard 0.2 created it, holding one live session."""
    engine = sa.create_engine(url)
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert().values(id=KEY, data=b"old", version=1, expires_at=now + 60))
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_old_table_gets_the_owner_column_and_keeps_its_sessions(
    kind: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_server").url
    name = f"old_{uuid.uuid4().hex[:12]}"
    old_table(url, name, clock.now)

    store = SQLStore(url, table_name=name, clock=clock)
    try:
        store.create()  # what opening the store on first use does
        record = store.load(KEY)
        assert record is not None and record.payload == b"old"
        assert store.owner_of(KEY) is None
        store.save(KEY, b"new", expires_at=clock.now + 60, owner="alice")
        assert store.sessions_of("alice") == [KEY]
        engine = sa.create_engine(url)
        columns = {c["name"] for c in sa.inspect(engine).get_columns(name)}
        engine.dispose()
        assert "owner" in columns
    finally:
        store.close()
