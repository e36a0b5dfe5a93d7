"""`SQLStore`: sessions in a SQL table through SQLAlchemy Core 2 (SQLite by default, PostgreSQL).

```
sessionguard_sessions(id varchar(128) primary key, data blob, version bigint,
                      expires_at double precision, owner blob null,
                      index on expires_at, index on owner where owner is not null)
```

Compare-and-swap is `UPDATE ... WHERE id = ? AND version = ?`; creating a session is an
upsert that only overwrites an *expired* row; `purge_expired` deletes in batches on the
expires_at index. The owner (`indexes_users`) is a column of the row, written by the same
statement as the payload, so the index by user (`sessions_of`: a SELECT on the owner
index) can never disagree with the rows, and deleting or purging a row unindexes it.
Tables made before owners existed get the column when the store creates or opens
them. SQLite runs in WAL mode with a busy timeout so readers never block writers.
Errors that mean "the database cannot serve us now" (unreachable, read-only, locked,
silent past `io_timeout`) become `StoreUnavailableError`.

Requires `pip install 'sessionguard[sql]'` (SQLite) or `'sessionguard[postgres]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import methodcaller
from typing import Any, Generic, TypeVar

from ..errors import ConfigurationError, StoreUnavailableError
from .base import (
    ABSENT,
    KEEP,
    BaseStore,
    Emit,
    Owner,
    PurgeProgress,
    Record,
    StoredRecord,
    StoreFlow,
    Updater,
    arun_purge,
    aupdate_by_swap,
    iterate_flow,
    validate_key,
)
from .sqlwait import bounded_psycopg, waits_bounded

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
    from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
    from sqlalchemy.sql.dml import ReturningDelete
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError("SQLStore needs SQLAlchemy: pip install 'sessionguard[sql]'") from exc

__all__ = ["SQLStore"]

_T = TypeVar("_T")
_PURGE_BATCH = 1000
# Purging, scanning and creating the table may meet a big table: each reply may take
# this long (or `io_timeout`, if that is longer) before the store gives up.
_MAINTENANCE_TIMEOUT = 60.0
# How long a SQLite write waits for another connection's write lock.
_SQLITE_BUSY_TIMEOUT = 5.0
# Sync driver name -> the async driver SQLAlchemy pairs with it.
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}


class SQLStore(BaseStore):
    """Sessions in a SQL table; one object serves both the WSGI and the ASGI middleware.

    Give a `url` (`sqlite:///sessions.db`, `postgresql+psycopg://user@host/db`; the
    store creates and disposes its engines) or ready engines (`engine`, `async_engine`;
    whoever created them disposes them). The table is created on first use unless
    `create_table=False`; `create()` / `acreate()` create it explicitly.

    Each operation is written once, as transactions (`_Tx`) that work on a blocking
    `Connection`; the async methods run the very same work on the asyncio engine, through
    `AsyncConnection.run_sync`. `update` is the compare-and-swap loop rather than
    `SELECT ... FOR UPDATE`: one code path for SQLite (which has no row locks) and
    PostgreSQL, and no lock held across round trips. The owner travels with each
    compare-and-swap write, so an update that changes it is as atomic as one that does not.

    How long an operation waits for PostgreSQL is bounded on the client side, because a
    server that stops answering (frozen, or cut off by the network) leaves its TCP
    connections open, and a server-side `statement_timeout` never fires there:

    - `io_timeout` (seconds, 1.0) bounds each wait for a reply on an open connection,
      the pool's pre-ping included, and the wait for a free connection of the pool. When
      it runs out the connection is closed and the operation raises
      `StoreUnavailableError` at once, without opening another connection.
    - `connect_timeout` (whole seconds, 2: libpq's and psycopg's minimum) bounds opening
      a connection.

    So a frozen or unreachable PostgreSQL makes `load`, `save`, `update`, `delete` and
    `touch` raise `StoreUnavailableError` after about `io_timeout` on a pooled
    connection and `connect_timeout` on a new one, sync and async, and the pool
    reconnects by itself once the server answers again. Purging, `scan` and creating the
    table wait up to a minute for each reply instead (a big table may need it). These
    bounds hold on the engines the store makes from `url` with psycopg 3 (the driver the
    `postgres` extra installs); engines you pass in keep their own settings.

    On SQLite there is no server to freeze: a database locked by another process makes
    a write wait out SQLite's busy timeout, 5 s, and then raise `StoreUnavailableError`
    (reads go on meanwhile: WAL); `io_timeout` does not change that.
    """

    indexes_users = True

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
        table_name: str = "sessionguard_sessions",
        create_table: bool = True,
        connect_timeout: int = 2,
        io_timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        if url is None and engine is None and async_engine is None:
            raise ConfigurationError(
                "SQLStore needs a url (SQLStore('sqlite:///sessions.db')) or an engine"
            )
        if not 0 < io_timeout < math.inf:
            raise ConfigurationError(
                f"io_timeout must be a positive number of seconds, not {io_timeout!r}"
            )
        self._url = url
        self._connect_timeout = connect_timeout
        self._io_timeout = io_timeout
        self._maintenance_timeout = max(io_timeout, _MAINTENANCE_TIMEOUT)
        self._engine = engine
        self._async_engine = async_engine
        self._owns_engine = engine is None
        self._owns_async_engine = async_engine is None
        self._create_table = create_table
        self._table_ready = False
        self._table_lock = threading.Lock()
        self._atable_lock: asyncio.Lock | None = None
        self.table = _table(table_name)
        self._creation = _Tx("create the table", self._create_all)
        self._clock = clock

    def __repr__(self) -> str:
        return f"SQLStore(table={self.table.name!r})"

    # -- engines, created on first use; a transaction on each ----------------------------

    def _engine_options(self, driver: str, *, asynchronous: bool) -> dict[str, Any]:
        if driver.startswith("sqlite"):
            return {"connect_args": {"timeout": self._connect_timeout}}
        connect_args: dict[str, Any] = {"connect_timeout": self._connect_timeout}
        if asynchronous and driver == _ASYNC_DRIVERS["postgresql"]:
            # How SQLAlchemy's psycopg dialect lets us choose the connection class.
            connect_args["async_creator_fn"] = bounded_psycopg().aconnect
        # The pool's wait for a free connection: while PostgreSQL is silent every
        # connection is stuck for up to `io_timeout`, and a queue behind them would turn
        # the 503 into a wait of many times that.
        return {
            "pool_pre_ping": True,
            "pool_timeout": self._io_timeout,
            "connect_args": connect_args,
        }

    def _url_for(self, given: str, missing: str, adapter: str) -> URL:
        if self._url is None:
            raise ConfigurationError(
                f"this SQLStore was given only {given}; pass {missing}= or url= to use it "
                f"from {adapter}"
            )
        return make_url(self._url)

    def _sync_engine(self) -> Engine:
        if self._engine is None:
            url = self._url_for("async_engine", "engine", "WSGI")
            options = self._engine_options(url.drivername, asynchronous=False)
            self._engine = sa.create_engine(url, **options)
            _configure_sqlite(self._engine)
            _configure_psycopg(self._engine)
        if not self._table_ready and self._create_table:
            with self._table_lock, waits_bounded(self._maintenance_timeout):
                _in_transaction(self._engine, self._creation)
                self._table_ready = True
        return self._engine

    async def _engine_async(self) -> AsyncEngine:
        if self._async_engine is None:
            url = self._url_for("engine", "async_engine", "ASGI")
            backend = url.get_backend_name()
            if backend not in _ASYNC_DRIVERS:
                raise ConfigurationError(f"SQLStore has no async driver for {backend!r} URLs")
            url = url.set(drivername=_ASYNC_DRIVERS[backend])
            options = self._engine_options(url.drivername, asynchronous=True)
            self._async_engine = create_async_engine(url, **options)
            _configure_sqlite(self._async_engine.sync_engine)
        if not self._table_ready and self._create_table:
            self._atable_lock = self._atable_lock or asyncio.Lock()
            async with self._atable_lock:
                with waits_bounded(self._maintenance_timeout):
                    await _ain_transaction(self._async_engine, self._creation)
                self._table_ready = True
        return self._async_engine

    def _transact(self, tx: _Tx[_T], timeout: float | None = None) -> _T:
        with _mapped_errors(tx.action):  # making the engine included
            engine = self._sync_engine()
            with waits_bounded(timeout or self._io_timeout):
                return _in_transaction(engine, tx)

    async def _atransact(self, tx: _Tx[_T], timeout: float | None = None) -> _T:
        engine = await self._engine_async()
        with waits_bounded(timeout or self._io_timeout):
            return await _ain_transaction(engine, tx)

    def _maintain(self, tx: _Tx[_T]) -> _T:
        return self._transact(tx, self._maintenance_timeout)

    async def _amaintain(self, tx: _Tx[_T]) -> _T:
        return await self._atransact(tx, self._maintenance_timeout)

    def _create_all(self, conn: Connection) -> None:
        self.table.metadata.create_all(conn, checkfirst=True)
        _add_owner_column(conn, self.table)

    def create(self) -> None:
        """Create the table and its index if they do not exist."""
        self._maintain(self._creation)

    async def acreate(self) -> None:
        await self._amaintain(self._creation)

    # -- the API: each method runs its transactions on one engine -------------------------

    def load(self, key: str) -> Record | None:
        return self._transact(self._load(key))

    async def aload(self, key: str) -> Record | None:
        return await self._atransact(self._load(key))

    def save(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        return self._transact(self._save(key, payload, expires_at, expected_version, owner))

    async def asave(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        tx = self._save(key, payload, expires_at, expected_version, owner)
        return await self._atransact(tx)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        return self._transact(self._delete(key, expected_version))

    async def adelete(self, key: str, *, expected_version: int | None = None) -> bool:
        return await self._atransact(self._delete(key, expected_version))

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        return self._transact(self._touch(key, expires_at, expected_version))

    async def atouch(
        self, key: str, expires_at: float, *, expected_version: int | None = None
    ) -> bool:
        return await self._atransact(self._touch(key, expires_at, expected_version))

    async def aupdate(self, key: str, updater: Updater) -> int | None:
        return await aupdate_by_swap(self, key, updater)

    def sessions_of(self, user: str) -> list[str]:
        return self._transact(self._sessions_of(user))

    async def asessions_of(self, user: str) -> list[str]:
        return await self._atransact(self._sessions_of(user))

    def owner_of(self, key: str) -> str | None:
        return self._transact(self._owner_of(key))

    async def aowner_of(self, key: str) -> str | None:
        return await self._atransact(self._owner_of(key))

    def purge_expired_batches(self, batch_size: int = _PURGE_BATCH) -> Iterator[PurgeProgress]:
        """Delete expired rows, `batch_size` per transaction; progress counts rows."""
        yield from iterate_flow(self._purge(batch_size), self._maintain)

    async def apurge_expired(self) -> int:
        return await arun_purge(self._purge(_PURGE_BATCH), self._amaintain)

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        """Every row, expired ones too, `batch_size` rows per query in primary key order.

        Keyset pagination (`WHERE id > last`), so each query is an index range scan and
        no transaction or cursor stays open between batches.
        """
        after: str | None = None
        while True:
            stmt = _scan_batch(self.table, after, batch_size)
            rows = self._maintain(_query("scan sessions", stmt, methodcaller("all")))
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

    async def aclose(self) -> None:
        self.close()
        if self._async_engine is not None and self._owns_async_engine:
            await self._async_engine.dispose()
            self._async_engine = None

    # -- the operations, each written once ------------------------------------------------

    def _load(self, key: str) -> _Tx[Record | None]:
        stmt = _load_statement(self.table, validate_key(key), self._clock())
        return _query("load", stmt, _record)

    def _save(
        self, key: str, payload: bytes, expires_at: float, expected: int | None, owner: Owner
    ) -> _Tx[int | None]:
        key = validate_key(key)
        write = _Row(key, payload, expires_at, owner)

        def save(conn: Connection) -> int | None:
            dialect, now = conn.dialect.name, self._clock()
            stmt = _save_statement(self.table, dialect, write, expected, now)
            return _version(conn.execute(stmt).first())

        return _Tx("save", save)

    def _delete(self, key: str, expected: int | None) -> _Tx[bool]:
        stmt = _delete_statement(self.table, validate_key(key), expected, self._clock())
        return _query("delete", stmt, lambda result: bool(result.scalar()))

    def _touch(self, key: str, expires_at: float, expected: int | None) -> _Tx[bool]:
        stmt = _touch_statement(self.table, validate_key(key), expires_at, expected, self._clock())
        return _query("touch", stmt, lambda result: result.rowcount > 0)

    def _sessions_of(self, user: str) -> _Tx[list[str]]:
        c = self.table.c
        # Live rows only, as `load` sees them: an expired row waits for the purge, unlisted.
        stmt = sa.select(c.id).where(c.owner == _owner_column(user), c.expires_at > self._clock())
        return _query("list the sessions of a user", stmt, lambda result: list(result.scalars()))

    def _owner_of(self, key: str) -> _Tx[str | None]:
        c = self.table.c
        stmt = sa.select(c.owner).where(c.id == validate_key(key), c.expires_at > self._clock())
        return _query("read the owner of a session", stmt, lambda result: _owner(result.scalar()))

    def _purge(self, batch_size: int) -> StoreFlow[None]:
        """Emits a `PurgeProgress` per batch; `total` is the count of expired rows at the
        start."""
        count = sa.select(sa.func.count()).where(self.table.c.expires_at <= self._clock())
        total = yield _query("count expired sessions", count, methodcaller("scalar_one"))
        done = 0
        while True:
            stmt = _purge_batch(self.table, self._clock(), batch_size)
            keys = yield _query("purge expired sessions", stmt, _ids)
            done += len(keys)
            yield Emit(PurgeProgress(len(keys), done, int(total), keys=keys))
            if len(keys) < batch_size:
                return


# -- transactions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tx(Generic[_T]):
    """One transaction of an operation (a step of its flow): `work` runs in it on a
    blocking `Connection`, whichever engine runs it."""

    action: str  # for errors: "SQLStore could not <action>"
    work: Callable[[Connection], _T]


def _query(action: str, statement: Any, read: Callable[[CursorResult[Any]], _T]) -> _Tx[_T]:
    """The transaction that executes `statement` and reads its result with `read`."""
    return _Tx(action, lambda conn: read(conn.execute(statement)))


def _in_transaction(engine: Engine, tx: _Tx[_T]) -> _T:
    with _mapped_errors(tx.action), engine.begin() as conn:
        return tx.work(conn)


async def _ain_transaction(engine: AsyncEngine, tx: _Tx[_T]) -> _T:
    # `run_sync` is how SQLAlchemy runs blocking code on an asyncio connection: the work
    # is the same function the blocking engine calls, its I/O awaited underneath.
    with _mapped_errors(tx.action):
        async with engine.begin() as conn:
            return await conn.run_sync(tx.work)


# -- statements and results -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    """What a save writes into a row."""

    key: str
    payload: bytes
    expires_at: float
    owner: Owner


def _table(name: str) -> sa.Table:
    # The owner is UTF-8 in a binary column: PostgreSQL's text cannot hold NUL, and user
    # ids are whatever the application says they are.
    owner = sa.Column("owner", sa.LargeBinary, nullable=True)
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
        owner,
        # Only equality is asked of it: on PostgreSQL a hash index, whose entries have no
        # size limit (a B-tree refuses values over about 2.7 kB). Partial: anonymous
        # sessions, the most, are not indexed at all.
        sa.Index(
            f"ix_{name}_owner",
            owner,
            postgresql_using="hash",
            postgresql_where=owner.is_not(None),
            sqlite_where=owner.is_not(None),
        ),
    )


def _add_owner_column(conn: Connection, table: sa.Table) -> None:
    """Give a table made before records had owners its `owner` column and index.

    `create_all` creates only missing tables, never a missing column of an existing one.
    """
    existing = sa.inspect(conn).get_columns(table.name, schema=table.schema)
    if any(column["name"] == "owner" for column in existing):
        return
    prepare, column = conn.dialect.identifier_preparer, table.c.owner
    # IF NOT EXISTS where the database has it: another process may be adding it right now.
    guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
    conn.execute(
        sa.text(
            f"ALTER TABLE {prepare.format_table(table)} ADD COLUMN {guard}"
            f"{prepare.format_column(column)} {column.type.compile(dialect=conn.dialect)}"
        )
    )
    for index in table.indexes:
        if "owner" in index.columns:
            conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))


def _load_statement(table: sa.Table, key: str, now: float) -> sa.Select[Any]:
    c = table.c
    return sa.select(c.data, c.version, c.expires_at).where(c.id == key, c.expires_at > now)


def _save_statement(
    table: sa.Table, dialect: str, row: _Row, expected: int | None, now: float
) -> Any:
    c = table.c
    if expected is not None and expected != ABSENT:
        # Only a live row matches: KEEP leaves its owner as it is.
        owner = {} if row.owner is KEEP else {"owner": _owner_column(row.owner)}
        return (
            sa.update(table)
            .where(c.id == row.key, c.version == expected, c.expires_at > now)
            .values(data=row.payload, version=c.version + 1, expires_at=row.expires_at, **owner)
            .returning(c.version)
        )
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    stmt = insert.values(
        id=row.key,
        data=row.payload,
        version=1,
        expires_at=row.expires_at,
        owner=None if row.owner is KEEP else _owner_column(row.owner),
    )
    excluded = stmt.excluded
    # KEEP keeps the owner of a live row; an expired row's session is over, and so is its
    # ownership (as if the purge had come first).
    kept = sa.case((c.expires_at <= now, sa.null()), else_=c.owner)
    # ABSENT: create, or replace only a row that has already expired.
    condition = c.expires_at <= now if expected == ABSENT else None
    return stmt.on_conflict_do_update(
        index_elements=[c.id],
        set_={
            "data": excluded.data,
            "version": c.version + 1,
            "expires_at": excluded.expires_at,
            "owner": kept if row.owner is KEEP else excluded.owner,
        },
        where=condition,
    ).returning(c.version)


def _delete_statement(table: sa.Table, key: str, expected: int | None, now: float) -> Any:
    stmt = sa.delete(table).where(table.c.id == key)
    if expected is not None:
        stmt = stmt.where(table.c.version == expected, table.c.expires_at > now)
    # An expired row goes too, but it was not live: report it as not deleted.
    return stmt.returning(table.c.expires_at > now)


def _touch_statement(
    table: sa.Table, key: str, expires_at: float, expected: int | None, now: float
) -> sa.Update:
    c = table.c
    stmt = sa.update(table).where(c.id == key, c.expires_at > now)
    if expected is not None:
        stmt = stmt.where(c.version == expected)
    return stmt.values(expires_at=expires_at)


def _purge_batch(
    table: sa.Table, now: float, limit: int = _PURGE_BATCH
) -> ReturningDelete[tuple[str]]:
    c = table.c
    expired = sa.select(c.id).where(c.expires_at <= now).limit(limit)
    # The deadline is checked again on the row being deleted, not only in the subquery:
    # a row refreshed by a transaction that commits while this DELETE waits for its lock
    # is re-evaluated (PostgreSQL's EvalPlanQual) against these conditions, and `id IN`
    # alone would still match it and delete a session that was just refreshed.
    deleted = sa.delete(table).where(c.id.in_(expired.scalar_subquery()), c.expires_at <= now)
    return deleted.returning(c.id)  # SQLite has RETURNING from 3.35, PostgreSQL always


def _scan_batch(table: sa.Table, after: str | None, limit: int) -> sa.Select[Any]:
    c = table.c
    stmt = sa.select(c.id, c.data, c.version, c.expires_at).order_by(c.id).limit(limit)
    return stmt if after is None else stmt.where(c.id > after)


def _record(result: CursorResult[Any]) -> Record | None:
    row = result.first()
    if row is None:
        return None
    return Record(bytes(row.data), int(row.version), float(row.expires_at))


def _version(row: Any) -> int | None:
    return None if row is None else int(row.version)


def _owner_column(owner: str | None) -> bytes | None:
    # surrogatepass: any Python str round-trips, lone surrogates included.
    return None if owner is None else owner.encode("utf-8", "surrogatepass")


def _owner(stored: Any) -> str | None:
    return None if stored is None else bytes(stored).decode("utf-8", "surrogatepass")


def _ids(result: CursorResult[Any]) -> tuple[str, ...]:
    return tuple(row.id for row in result)


def _configure_sqlite(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers do not block the writer; busy_timeout: wait for the lock, don't fail.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _configure_psycopg(engine: Engine) -> None:
    if (engine.dialect.name, engine.dialect.driver) != ("postgresql", "psycopg"):
        return
    connect = bounded_psycopg().connect

    @sa.event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return connect(*cargs, **cparams)


def _error(action: str, exc: sa.exc.SQLAlchemyError) -> StoreUnavailableError:
    text = str(getattr(exc, "orig", None) or exc)
    if "read-only" in text or "readonly" in text:
        hint = "The database is read-only (a restart, failover or maintenance in progress?)"
    elif "database is locked" in text:  # SQLite, after its busy timeout
        hint = (
            f"Another connection held the database's write lock for over {_SQLITE_BUSY_TIMEOUT:g} s"
        )
    else:
        hint = "Check that the database is running, reachable and writable"
    return StoreUnavailableError(
        f"SQLStore could not {action}: {text.strip()}. {hint}; stored sessions were not changed."
    )


@contextlib.contextmanager
def _mapped_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise _error(action, exc) from exc
