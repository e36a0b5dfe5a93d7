"""Every default that README.md or a docstring states, asserted as the literal it states.

Each test names the claim it checks (quoted from README.md unless it says otherwise) and
checks the number both as the code's setting and, where there is one, by what a request
or a store then does. The literals are written out on purpose: a test that computed them
from the code's own constants would pass whatever the constants became. When one of
these fails, the code and its documentation disagree, and one of them must change.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

from sessionguard import CorruptionPolicy
from sessionguard.asgi import SessionMiddleware as ASGIMiddleware
from sessionguard.cli import _parser
from sessionguard.cookie import new_id
from sessionguard.core import SessionCore
from sessionguard.driver import run_sync
from sessionguard.errors import ConflictError, StoreUnavailableError
from sessionguard.flask import SessionInterface
from sessionguard.legacy import LegacyCookie
from sessionguard.options import build_core
from sessionguard.policy import ErrorResponse
from sessionguard.session import Session
from sessionguard.sources.base import DEFAULT_MAX_AGE
from sessionguard.stores import FileStore, MemoryStore, Record, Store
from sessionguard.stores.base import Write, key_hash
from sessionguard.stores.redis import RedisStore
from sessionguard.stores.sql import SQLStore
from sessionguard.wsgi import SessionMiddleware as WSGIMiddleware
from tests.clock import START, FakeClock

SECRET = "documented-defaults-secret"
MINUTE = 60
DAY = 24 * 60 * 60
KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


def default_core(clock: FakeClock, **options: Any) -> SessionCore:
    core = build_core(SECRET, **options)
    core.clock = clock
    return core


def commit(core: SessionCore, store: Store, session: Session) -> tuple[str, ...] | ErrorResponse:
    return run_sync(core.commit(session), store)


def open_session(core: SessionCore, store: Store, key: str) -> Session:
    opened = run_sync(core.open(f"session={core.signer.sign(key)}"), store)
    assert isinstance(opened, Session), opened
    return opened


def create(core: SessionCore, store: Store, **data: Any) -> str:
    session = Session()
    session.update(data)
    result = commit(core, store, session)
    assert isinstance(result, tuple) and len(result) == 1, result
    return session._sg.id


# -- lifetimes -----------------------------------------------------------------------------


def test_idle_timeout_is_14_days_and_the_cookie_lasts_as_long(
    clock: FakeClock, store: MemoryStore
) -> None:
    """ "`idle_timeout` (defaults to `max_age`, 14 days) slides as the session is used";
    "a session idle for `max_age` (or 14 days when `max_age=None`) ends on the server too"."""
    core = default_core(clock)
    assert core.idle_timeout == 1_209_600
    assert core.cookie.max_age == 1_209_600
    assert build_core(SECRET, max_age=None).idle_timeout == 1_209_600

    session = Session()
    session["user"] = "alice"
    result = commit(core, store, session)
    assert isinstance(result, tuple) and "Max-Age=1209600;" in result[0]
    record = store.load(session._sg.id)
    assert record is not None and record.expires_at == START + 1_209_600

    clock.advance(14 * DAY - 1)
    assert dict(open_session(core, store, session._sg.id)) == {"user": "alice"}
    clock.advance(1)
    assert open_session(core, store, session._sg.id).is_new


def test_absolute_timeout_is_30_days_or_max_age_if_that_is_longer(
    clock: FakeClock, store: MemoryStore
) -> None:
    """ "`absolute_timeout` (30 days, or `max_age` if that is longer) ends a session however
    active it is"."""
    core = default_core(clock)
    assert core.absolute_timeout == 2_592_000
    assert build_core(SECRET, max_age=90 * DAY).absolute_timeout == 90 * DAY

    key = create(core, store, visits=0)
    for visits, day in enumerate((10, 20, 29)):  # a write every few days: never idle
        clock.now = START + day * DAY
        session = open_session(core, store, key)
        assert not session.is_new and session["visits"] == visits
        session["visits"] = visits + 1
        assert isinstance(commit(core, store, session), tuple)

    clock.now = START + 30 * DAY - 1
    assert not open_session(core, store, key).is_new
    clock.now = START + 30 * DAY
    assert open_session(core, store, key).is_new


def test_a_regenerated_ids_forward_pointer_lives_30_seconds(
    clock: FakeClock, store: MemoryStore
) -> None:
    """ "`regenerate()` ... leaves at the old id, for 30 seconds that nothing extends, a
    forward pointer"."""
    core = default_core(clock)
    assert core.regenerate_grace == 30
    old = create(core, store, user="alice")

    login = open_session(core, store, old)
    login.regenerate()
    assert isinstance(commit(core, store, login), tuple)

    pointer = store.load(old)
    assert pointer is not None and pointer.expires_at == START + 30
    clock.advance(29)
    assert store.load(old) is not None
    clock.advance(1)
    assert store.load(old) is None


@pytest.mark.parametrize(
    ("idle_timeout", "threshold"),
    [(None, MINUTE), (1000, 10)],
    ids=["default-idle", "idle-1000s"],
)
def test_a_read_only_request_moves_the_idle_deadline_only_past_the_threshold(
    clock: FakeClock, store: MemoryStore, idle_timeout: int | None, threshold: int
) -> None:
    """ "A read-only request moves the idle deadline at most about once a minute per session
    (when it would move by more than `min(60 s, idle_timeout / 100)`)"."""
    core = default_core(clock, idle_timeout=idle_timeout)
    key = create(core, store, user="alice")
    created = store.load(key)
    assert created is not None

    clock.advance(threshold - 1)
    assert commit(core, store, open_session(core, store, key)) == ()
    assert store.load(key) == created

    clock.advance(2)  # now `threshold + 1` seconds after the write
    refreshed = commit(core, store, open_session(core, store, key))
    assert isinstance(refreshed, tuple) and len(refreshed) == 1  # the cookie, re-sent
    touched = store.load(key)
    assert touched is not None and touched.expires_at == created.expires_at + threshold + 1


def test_an_adopted_legacy_id_is_remembered_31_days() -> None:
    """ "The marker lives `LegacyCookie(..., max_age=...)` seconds (31 days by default")."""
    assert LegacyCookie("sessionid").max_age == 2_678_400


def test_a_migrated_record_without_a_deadline_lives_two_weeks() -> None:
    """sources/base.py: "Lifetime of a record whose store keeps no deadline (Django's
    SESSION_COOKIE_AGE default)", which README gives as "two weeks by default"."""
    assert DEFAULT_MAX_AGE == 1_209_600


# -- sizes ---------------------------------------------------------------------------------


def test_max_size_is_64_KiB_of_stored_record(clock: FakeClock, store: MemoryStore) -> None:
    """ "a save that would store more than `max_size` bytes (64 KiB by default)": 413 `The
    session is too large ...`, no cookie set; an anonymous request writes nothing."""
    core = default_core(clock)
    assert core.max_size == 65_536

    def save(length: int) -> tuple[Session, tuple[str, ...] | ErrorResponse]:
        session = Session()
        session["blob"] = "x" * length
        return session, commit(core, store, session)

    # The largest value that is still saved: its record must be exactly 64 KiB.
    low, high = 60_000, 70_000
    assert isinstance(save(low)[1], tuple) and isinstance(save(high)[1], ErrorResponse)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if isinstance(save(middle)[1], tuple) else (low, middle)
    largest, _ = save(low)
    record = store.load(largest._sg.id)
    assert record is not None and len(record.payload) == 65_536

    too_large, answer = save(high)
    assert isinstance(answer, ErrorResponse) and answer.status == 413
    assert answer.body.startswith(b"The session is too large")
    assert not any(name == "set-cookie" for name, _ in answer.headers)
    assert store.load(too_large._sg.id) is None


def test_file_store_reads_and_writes_records_of_at_most_1_MiB(tmp_path: Path) -> None:
    """FileStore's docstring and README: "`max_record_size` (1 MiB) bounds what is read for
    one session, header included"; a save that would write more keeps the old record."""
    store = FileStore(tmp_path / "sessions", durable=False)
    assert store.max_record_size == 1_048_576
    header = 32  # the record file's header (see tests/record_files.py)

    assert store.save(KEY, b"a" * (1_048_576 - header), expires_at=time.time() + 60)
    with pytest.raises(StoreUnavailableError, match="1048577 bytes"):
        store.save(KEY, b"b" * (1_048_576 - header + 1), expires_at=time.time() + 60)
    record = store.load(KEY)
    assert record is not None and record.payload == b"a" * (1_048_576 - header)


# -- answers -------------------------------------------------------------------------------


class DownStore(MemoryStore):
    def load(self, key: str) -> Record | None:
        raise StoreUnavailableError("the session store is down")


def test_a_store_outage_is_a_503_with_retry_after_5(clock: FakeClock) -> None:
    """ "store down, disk full, permission denied": "503 with `Retry-After: 5`"."""
    assert CorruptionPolicy().retry_after == 5
    core = default_core(clock)

    answer = run_sync(core.open(f"session={core.signer.sign(KEY)}"), DownStore(clock=clock))

    assert isinstance(answer, ErrorResponse) and answer.status == 503
    assert ("retry-after", "5") in answer.headers


def test_a_corrupt_record_is_reset_by_default(clock: FakeClock, store: MemoryStore) -> None:
    """ "A corrupt record goes to the `CorruptionPolicy` (reset by default, or a 400)"."""
    assert CorruptionPolicy().on_corrupt == "reset"
    core = default_core(clock)
    assert store.save(KEY, b"garbage", expires_at=START + 60) is not None

    session = open_session(core, store, KEY)

    assert session.is_new and session._sg.id != KEY and store.load(KEY) is None


def test_the_remaining_option_defaults() -> None:
    """ "both cookies are called `session` by default"; "`serializer="msgpack"`, the
    default"; "Records written by sessionguard 0.1 carry no signature and are read by
    default"; a regenerate refuses in-flight writes "by default" (409)."""
    core = build_core(SECRET)
    assert core.cookie.name == "session"
    assert core.serializer == "msgpack"
    assert core.accept_unsigned is True
    assert core.merge is True
    assert Session()._sg.carry_in_flight is False


def test_ids_are_160_random_bits_and_the_cookie_is_id_dot_hmac_sha256() -> None:
    """ "ids are 160 random bits and the cookie is `id.HMAC-SHA256(id)`"; "Log lines and
    events name sessions only by a 12-hex-digit hash of the id"."""
    key = new_id()
    assert re.fullmatch(r"[0-9a-f]{40}", key)  # 40 hex digits: 160 bits
    signed = build_core(SECRET).signer.sign(key)
    assert re.fullmatch(key + r"\.[A-Za-z0-9_-]{43}", signed)  # 32 bytes, base64url
    assert re.fullmatch(r"[0-9a-f]{12}", key_hash(key))


# -- stores --------------------------------------------------------------------------------


def test_every_middleware_keeps_sessions_in_dot_sessions_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "`store` defaults to a `FileStore` in `./sessions`" (the ASGI and WSGI middlewares'
    and the Flask interface's docstrings); FileStore: "`durable=True` (the default)"."""
    monkeypatch.chdir(tmp_path)

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:  # never called
        raise AssertionError

    stores = [
        ASGIMiddleware(asgi_app, SECRET).store,
        WSGIMiddleware(lambda environ, start_response: [], SECRET).store,
        SessionInterface().store,
    ]
    for store in stores:
        assert isinstance(store, FileStore)
        assert store.directory == str(tmp_path / "sessions")
        assert store.durable is True


def test_the_sql_table_and_the_redis_prefix(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The CLI's "--table: SQL table name (default sessionguard_sessions)" and "--prefix:
    Redis key prefix (default sessionguard:)", and "records per batch (500)"."""
    sql = SQLStore(f"sqlite:///{tmp_path / 'sessions.db'}")
    try:
        assert sql.save(KEY, b"payload", expires_at=time.time() + 60) is not None
        assert sql.table.name == "sessionguard_sessions"
    finally:
        sql.close()
    tables = SQLStore(f"sqlite:///{tmp_path / 'sessions.db'}", table_name="sessionguard_sessions")
    try:
        assert tables.load(KEY) is not None  # the same table, named explicitly
    finally:
        tables.close()
    assert RedisStore("redis://127.0.0.1:1/0").prefix == "sessionguard:"
    assert _parser().parse_args(["purge", "sessions"]).batch == 500


# -- the compare-and-swap loop -----------------------------------------------------------

Mode = Literal["sync", "async"]


@pytest.fixture(params=["sqlite", "redis"])
async def cas_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose `update` is the compare-and-swap loop: SQL (on SQLite) and Redis."""
    store: Store
    if request.param == "sqlite":
        store = SQLStore(f"sqlite:///{tmp_path / 'sessions.db'}")
    else:
        server = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, prefix=f"defaults:{uuid.uuid4().hex}:")
    yield store
    await store.aclose()


def rival_after_every_load(
    store: Store, monkeypatch: pytest.MonkeyPatch, deadline: float
) -> list[int | None]:
    """Make a concurrent request win every race: right after each load, it saves the
    session (unconditionally) before the caller's compare-and-swap. Returns the versions
    the caller's own saves expected, one per attempt."""
    load, aload, save, asave = store.load, store.aload, store.save, store.asave
    expected: list[int | None] = []

    def losing_load(key: str) -> Record | None:
        record = load(key)
        save(key, b"rival", expires_at=deadline)
        return record

    async def losing_aload(key: str) -> Record | None:
        record = await aload(key)
        await asave(key, b"rival", expires_at=deadline)
        return record

    def counted_save(
        key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        expected.append(expected_version)
        return save(key, payload, expires_at=expires_at, expected_version=expected_version)

    async def counted_asave(
        key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        expected.append(expected_version)
        return await asave(key, payload, expires_at=expires_at, expected_version=expected_version)

    monkeypatch.setattr(store, "load", losing_load)
    monkeypatch.setattr(store, "aload", losing_aload)
    monkeypatch.setattr(store, "save", counted_save)
    monkeypatch.setattr(store, "asave", counted_asave)
    return expected


def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every sleep asked of `time.sleep` or `anyio.sleep` from now on, none taken."""
    sleeps: list[float] = []

    async def asleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr(time, "sleep", sleeps.append)
    monkeypatch.setattr(anyio, "sleep", asleep)
    return sleeps


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_and_sql_make_32_compare_and_swap_attempts_with_backoff(
    cas_store: Store, mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "concurrent writers kept winning (Redis and SQL: 32 compare-and-swap attempts with
    backoff ...)": 503 with `Retry-After`, the data intact. The backoff, in
    `stores/base.py`: "Full jitter, capped: at most 1, 2, 4 ... 50 ms"."""
    deadline = time.time() + 600
    first = cas_store.save(KEY, b"first", expires_at=deadline)
    assert first is not None
    expected = rival_after_every_load(cas_store, monkeypatch, deadline)
    sleeps = recorded_sleeps(monkeypatch)
    updater: Callable[[Record | None], Write] = lambda record: Write(b"mine", deadline)  # noqa: E731

    with pytest.raises(ConflictError, match="^32 compare-and-swap attempts"):
        if mode == "sync":
            cas_store.update(KEY, updater)
        else:
            await cas_store.aupdate(KEY, updater)

    assert len(expected) == 32 and None not in expected
    assert len(sleeps) == 31  # between attempts
    assert sum(sleeps) > 0
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= min(0.050, 0.001 * 2 ** (attempt - 1)), (attempt, delay)
    record = cas_store.load(KEY)
    assert record is not None and record.payload == b"rival"  # nothing of the loser


def test_a_session_save_that_keeps_losing_is_a_503_with_retry_after_5(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same row of the README's table, through the core, on SQL."""
    store = SQLStore(f"sqlite:///{tmp_path / 'sessions.db'}", clock=clock)
    try:
        core = default_core(clock)
        key = create(core, store, user="alice")
        session = open_session(core, store, key)
        session["cart"] = ["book"]
        stored = store.load(key)
        assert stored is not None
        load, save = store.load, store.save

        def losing_load(key: str) -> Record | None:
            record = load(key)
            if record is not None:  # another request saves the same data again, first
                save(key, record.payload, expires_at=record.expires_at)
            return record

        monkeypatch.setattr(store, "load", losing_load)
        sleeps = recorded_sleeps(monkeypatch)

        answer = commit(core, store, session)

        assert isinstance(answer, ErrorResponse) and answer.status == 503
        assert ("retry-after", "5") in answer.headers
        assert len(sleeps) == 31 and sum(sleeps) > 0
        after = load(key)
        assert after is not None and after.payload == stored.payload
    finally:
        store.close()


def test_the_file_store_never_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "the file store never retries": its update holds the session's lock from read to
    rename, so a concurrent save waits instead of making it start again."""
    store = FileStore(tmp_path / "sessions", durable=False)
    deadline = time.time() + 600
    assert store.save(KEY, b"first", expires_at=deadline) is not None
    shown: list[bytes | None] = []
    rival: list[int | None] = []
    racing = threading.Thread(
        target=lambda: rival.append(store.save(KEY, b"rival", expires_at=deadline))
    )

    def updater(record: Record | None) -> Write:
        shown.append(record.payload if record else None)
        if not racing.is_alive() and not rival:
            racing.start()  # a concurrent request saves while this one holds the lock
        return Write(b"mine", deadline)

    sleeps = recorded_sleeps(monkeypatch)
    version = store.update(KEY, updater)
    racing.join(timeout=10)

    assert version is not None and shown == [b"first"] and sleeps == []
    assert rival and rival[0] is not None  # it waited, then saved on top
    record = store.load(KEY)
    assert record is not None and record.payload == b"rival"
