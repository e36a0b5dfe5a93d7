"""`SQLStore`: sessions in a SQL table through SQLAlchemy Core 2 (SQLite by default, PostgreSQL).

```
sessionguard_sessions(id varchar(128) primary key, data blob, version bigint,
                      expires_at double precision, index on expires_at)
```

Compare-and-swap is `UPDATE ... WHERE id = ? AND version = ?`; creating a session is an
upsert that only overwrites an *expired* row; `purge_expired` deletes in batches on the
expires_at index. SQLite runs in WAL mode with a busy timeout so readers never block
writers. Errors that mean "the database cannot serve us now" (unreachable, read-only,
locked) become `StoreUnavailableError`.

Requires `pip install 'sessionguard[sql]'` (SQLite) or `'sessionguard[postgres]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ..errors import ConfigurationError, StoreUnavailableError
from .base import (
    ABSENT,
    PurgeProgress,
    Record,
    StoredRecord,
    Updater,
    aupdate_by_swap,
    update_by_swap,
    validate_key,
)

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.engine import Connection, Engine, make_url
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError("SQLStore needs SQLAlchemy: pip install 'sessionguard[sql]'") from exc

__all__ = ["SQLStore"]

_PURGE_BATCH = 1000
# Sync driver name -> the async driver SQLAlchemy pairs with it.
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}


class SQLStore:
    """Sessions in a SQL table; one object serves both the WSGI and the ASGI middleware.

    Give a `url` (`sqlite:///sessions.db`, `postgresql+psycopg://user@host/db`; the
    store creates and disposes its engines) or ready engines (`engine`, `async_engine`;
    whoever created them disposes them). The table is created on first use unless
    `create_table=False`; `create()` / `acreate()` create it explicitly.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
        table_name: str = "sessionguard_sessions",
        create_table: bool = True,
        connect_timeout: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if url is None and engine is None and async_engine is None:
            raise ConfigurationError(
                "SQLStore needs a url (SQLStore('sqlite:///sessions.db')) or an engine"
            )
        self._url = url
        self._connect_timeout = connect_timeout
        self._engine = engine
        self._async_engine = async_engine
        self._owns_engine = engine is None
        self._owns_async_engine = async_engine is None
        self._create_table = create_table
        self._table_ready = False
        self._table_lock = threading.Lock()
        self._atable_lock: asyncio.Lock | None = None
        self.table = _table(table_name)
        self._clock = clock

    def __repr__(self) -> str:
        return f"SQLStore(table={self.table.name!r})"

    # -- engines, created on first use ---------------------------------------------------

    def _engine_options(self, driver: str) -> dict[str, Any]:
        if driver.startswith("sqlite"):
            return {"connect_args": {"timeout": self._connect_timeout}}
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": self._connect_timeout}}

    def _sync_engine(self) -> Engine:
        if self._engine is None:
            if self._url is None:
                raise ConfigurationError(
                    "this SQLStore was given only async_engine; pass engine= or url= to use it "
                    "from WSGI"
                )
            url = make_url(self._url)
            self._engine = sa.create_engine(url, **self._engine_options(url.drivername))
            _configure_sqlite(self._engine)
        if not self._table_ready and self._create_table:
            with self._table_lock, _mapped_errors("create the table"):
                self.table.metadata.create_all(self._engine, checkfirst=True)
                self._table_ready = True
        return self._engine

    async def _engine_async(self) -> AsyncEngine:
        if self._async_engine is None:
            if self._url is None:
                raise ConfigurationError(
                    "this SQLStore was given only engine; pass async_engine= or url= to use it "
                    "from ASGI"
                )
            url = make_url(self._url)
            backend = url.get_backend_name()
            if backend not in _ASYNC_DRIVERS:
                raise ConfigurationError(f"SQLStore has no async driver for {backend!r} URLs")
            url = url.set(drivername=_ASYNC_DRIVERS[backend])
            self._async_engine = create_async_engine(url, **self._engine_options(url.drivername))
            _configure_sqlite(self._async_engine.sync_engine)
        if not self._table_ready and self._create_table:
            self._atable_lock = self._atable_lock or asyncio.Lock()
            async with self._atable_lock, _amapped_errors("create the table"):
                async with self._async_engine.begin() as conn:
                    await conn.run_sync(self.table.metadata.create_all, checkfirst=True)
                self._table_ready = True
        return self._async_engine

    def create(self) -> None:
        """Create the table and its index if they do not exist."""
        with _mapped_errors("create the table"):
            self.table.metadata.create_all(self._sync_engine(), checkfirst=True)

    async def acreate(self) -> None:
        engine = await self._engine_async()
        async with _amapped_errors("create the table"), engine.begin() as conn:
            await conn.run_sync(self.table.metadata.create_all, checkfirst=True)

    @contextlib.contextmanager
    def _begin(self, action: str) -> Iterator[Connection]:
        with _mapped_errors(action), self._sync_engine().begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _abegin(self, action: str) -> AsyncIterator[AsyncConnection]:
        engine = await self._engine_async()
        async with _amapped_errors(action), engine.begin() as conn:
            yield conn

    # -- sync API --------------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        stmt = _select(self.table, validate_key(key), self._clock())
        with self._begin("load") as conn:
            return _record(conn.execute(stmt).first())

    def save(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        key = validate_key(key)
        with self._begin("save") as conn:
            stmt = _save(
                self.table,
                conn.dialect.name,
                key,
                payload,
                expires_at,
                expected_version,
                self._clock(),
            )
            return _version(conn.execute(stmt).first())

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        stmt = _delete(self.table, validate_key(key), expected_version, self._clock())
        with self._begin("delete") as conn:
            return bool(conn.execute(stmt).scalar())

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        stmt = _touch(self.table, validate_key(key), expires_at, expected_version, self._clock())
        with self._begin("touch") as conn:
            return conn.execute(stmt).rowcount > 0

    def update(self, key: str, updater: Updater) -> int | None:
        # Compare-and-swap rather than SELECT ... FOR UPDATE: one code path for SQLite
        # (which has no row locks) and PostgreSQL, and no lock held across round trips.
        return update_by_swap(self, key, updater)

    def purge_expired(self) -> int:
        return sum(step.removed for step in self.purge_expired_batches())

    def purge_expired_batches(self, batch_size: int = _PURGE_BATCH) -> Iterator[PurgeProgress]:
        """Delete expired rows, `batch_size` per transaction; progress counts rows."""
        c = self.table.c
        with self._begin("count expired sessions") as conn:
            count = sa.select(sa.func.count()).where(c.expires_at <= self._clock())
            total = int(conn.execute(count).scalar_one())
        done = 0
        while True:
            with self._begin("purge expired sessions") as conn:
                stmt = _purge_batch(self.table, self._clock(), batch_size)
                batch = conn.execute(stmt).rowcount
            done += batch
            yield PurgeProgress(batch, done, total)
            if batch < batch_size:
                return

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        """Every row, expired ones too, `batch_size` rows per query in primary key order.

        Keyset pagination (`WHERE id > last`), so each query is an index range scan and
        no transaction or cursor stays open between batches.
        """
        after: str | None = None
        while True:
            with self._begin("scan sessions") as conn:
                rows = conn.execute(_scan_batch(self.table, after, batch_size)).all()
            for row in rows:
                record = Record(bytes(row.data), int(row.version), float(row.expires_at))
                yield StoredRecord(row.id, record, record.expires_at <= self._clock())
            if len(rows) < batch_size:
                return
            after = rows[-1].id

    def close(self) -> None:
        if self._engine is not None and self._owns_engine:
            self._engine.dispose()
            self._engine = None

    # -- async API -------------------------------------------------------------------------

    async def aload(self, key: str) -> Record | None:
        stmt = _select(self.table, validate_key(key), self._clock())
        async with self._abegin("load") as conn:
            return _record((await conn.execute(stmt)).first())

    async def asave(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        key = validate_key(key)
        async with self._abegin("save") as conn:
            stmt = _save(
                self.table,
                conn.dialect.name,
                key,
                payload,
                expires_at,
                expected_version,
                self._clock(),
            )
            return _version((await conn.execute(stmt)).first())

    async def adelete(self, key: str, *, expected_version: int | None = None) -> bool:
        stmt = _delete(self.table, validate_key(key), expected_version, self._clock())
        async with self._abegin("delete") as conn:
            return bool((await conn.execute(stmt)).scalar())

    async def atouch(
        self, key: str, expires_at: float, *, expected_version: int | None = None
    ) -> bool:
        stmt = _touch(self.table, validate_key(key), expires_at, expected_version, self._clock())
        async with self._abegin("touch") as conn:
            return (await conn.execute(stmt)).rowcount > 0

    async def aupdate(self, key: str, updater: Updater) -> int | None:
        return await aupdate_by_swap(self, key, updater)

    async def apurge_expired(self) -> int:
        removed = 0
        while True:
            async with self._abegin("purge expired sessions") as conn:
                batch = (await conn.execute(_purge_batch(self.table, self._clock()))).rowcount
            removed += batch
            if batch < _PURGE_BATCH:
                return removed

    async def aclose(self) -> None:
        self.close()
        if self._async_engine is not None and self._owns_async_engine:
            await self._async_engine.dispose()
            self._async_engine = None


# -- statements and results, shared by both halves -------------------------------------------


def _table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )


def _select(table: sa.Table, key: str, now: float) -> sa.Select[Any]:
    c = table.c
    return sa.select(c.data, c.version, c.expires_at).where(c.id == key, c.expires_at > now)


def _save(
    table: sa.Table,
    dialect: str,
    key: str,
    payload: bytes,
    expires_at: float,
    expected: int | None,
    now: float,
) -> Any:
    c = table.c
    if expected is not None and expected != ABSENT:
        return (
            sa.update(table)
            .where(c.id == key, c.version == expected, c.expires_at > now)
            .values(data=payload, version=c.version + 1, expires_at=expires_at)
            .returning(c.version)
        )
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    stmt = insert.values(id=key, data=payload, version=1, expires_at=expires_at)
    excluded = stmt.excluded
    # ABSENT: create, or replace only a row that has already expired.
    condition = c.expires_at <= now if expected == ABSENT else None
    return stmt.on_conflict_do_update(
        index_elements=[c.id],
        set_={"data": excluded.data, "version": c.version + 1, "expires_at": excluded.expires_at},
        where=condition,
    ).returning(c.version)


def _delete(table: sa.Table, key: str, expected: int | None, now: float) -> Any:
    stmt = sa.delete(table).where(table.c.id == key)
    if expected is not None:
        stmt = stmt.where(table.c.version == expected, table.c.expires_at > now)
    # An expired row goes too, but it was not live: report it as not deleted.
    return stmt.returning(table.c.expires_at > now)


def _touch(
    table: sa.Table, key: str, expires_at: float, expected: int | None, now: float
) -> sa.Update:
    c = table.c
    stmt = sa.update(table).where(c.id == key, c.expires_at > now)
    if expected is not None:
        stmt = stmt.where(c.version == expected)
    return stmt.values(expires_at=expires_at)


def _purge_batch(table: sa.Table, now: float, limit: int = _PURGE_BATCH) -> sa.Delete:
    c = table.c
    expired = sa.select(c.id).where(c.expires_at <= now).limit(limit)
    # The deadline is checked again on the row being deleted, not only in the subquery:
    # a row refreshed by a transaction that commits while this DELETE waits for its lock
    # is re-evaluated (PostgreSQL's EvalPlanQual) against these conditions, and `id IN`
    # alone would still match it and delete a session that was just refreshed.
    return sa.delete(table).where(c.id.in_(expired.scalar_subquery()), c.expires_at <= now)


def _scan_batch(table: sa.Table, after: str | None, limit: int) -> sa.Select[Any]:
    c = table.c
    stmt = sa.select(c.id, c.data, c.version, c.expires_at).order_by(c.id).limit(limit)
    return stmt if after is None else stmt.where(c.id > after)


def _record(row: Any) -> Record | None:
    if row is None:
        return None
    return Record(bytes(row.data), int(row.version), float(row.expires_at))


def _version(row: Any) -> int | None:
    return None if row is None else int(row.version)


def _configure_sqlite(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers do not block the writer; busy_timeout: wait for the lock, don't fail.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _error(action: str, exc: sa.exc.SQLAlchemyError) -> StoreUnavailableError:
    text = str(getattr(exc, "orig", None) or exc)
    hint = (
        "The database is read-only (a restart, failover or maintenance in progress?)"
        if "read-only" in text or "readonly" in text
        else "Check that the database is running, reachable and writable"
    )
    return StoreUnavailableError(
        f"SQLStore could not {action}: {text.strip()}. {hint}; stored sessions were not changed."
    )


@contextlib.contextmanager
def _mapped_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise _error(action, exc) from exc


@contextlib.asynccontextmanager
async def _amapped_errors(action: str) -> AsyncIterator[None]:
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise _error(action, exc) from exc
