"""`run_migration` and the readers on stores the real libraries wrote: what is copied,
what is skipped and why, and that pickle is never run without `trust_pickle`."""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cachelib.file import FileSystemCache

from sessionguard.codec import decode
from sessionguard.errors import ConfigurationError
from sessionguard.legacy import legacy_key
from sessionguard.migrate import SOURCE_KINDS, open_source, run_migration
from sessionguard.sources import LegacyRecord
from sessionguard.stores import FileStore, MemoryStore, Store

from .conftest import ALL_KINDS, PICKLE_KINDS, SAMPLES, Legacy, Seed, seed_flask_session

HOUR = 3600


def migrated(legacy: Legacy, store: Store, cookie: str) -> dict[str, Any] | None:
    """The data `migrate` stored for the session behind `cookie`, or `None`."""
    record_id = legacy.open().record_id(cookie)
    record = store.load(legacy_key(legacy.cookie_name, record_id))
    return None if record is None else decode(record.payload).data


def test_source_kinds_are_the_five_backends_and_quixote() -> None:
    # quixote-dir has tests of its own (tests/quixote/test_migrate.py): its sessions are
    # objects, copied under their own ids for sessionguard.quixote, not for adoption.
    assert SOURCE_KINDS == (*ALL_KINDS, "quixote-dir")


def test_every_session_is_copied_as_a_sessionguard_envelope(legacy: Legacy) -> None:
    store = MemoryStore()
    before = time.time()

    report = legacy.migrate(store)

    assert (report.copied, report.skipped_expired, report.undecodable) == (2, 0, 0)
    assert report.by_reason == {}
    for cookie, data in legacy.sessions.items():
        record_id = legacy.open().record_id(cookie)
        record = store.load(legacy_key(legacy.cookie_name, record_id))
        assert record is not None
        envelope = decode(record.payload)
        assert legacy.comparable(envelope.data) == legacy.comparable(data)
        assert envelope.moved_to is None and envelope.created_at >= before
        assert record.expires_at > time.time() + HOUR


def test_iterating_a_reader_yields_id_data_and_deadline(legacy: Legacy) -> None:
    reader = legacy.open()
    records = list(reader)
    assert all(isinstance(record, LegacyRecord) for record in records)
    by_id = {legacy_id: (data, expires_at) for legacy_id, data, expires_at in records}
    assert set(by_id) == {reader.record_id(cookie) for cookie in legacy.sessions}
    for cookie, expected in legacy.sessions.items():
        data, expires_at = by_id[reader.record_id(cookie)]
        assert legacy.comparable(data) == legacy.comparable(expected)
        assert expires_at > time.time()
        assert legacy.comparable(reader.load(cookie) or {}) == legacy.comparable(expected)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_expired_sessions_are_counted_and_not_copied(kind: str, seed: Seed) -> None:
    legacy = seed(kind, SAMPLES, lifetimes=[60, None])
    short, long = list(legacy.sessions)
    store = MemoryStore()

    report = legacy.migrate(store, clock=lambda: time.time() + HOUR)

    assert (report.copied, report.skipped_expired, report.undecodable) == (1, 1, 0)
    assert migrated(legacy, store, short) is None
    assert migrated(legacy, store, long) is not None
    # The read-only fallback does not bring an expired session back either.
    later = legacy.open(clock=lambda: time.time() + HOUR)
    assert later.load(short) is None
    assert later.load(long) is not None


def _tamper_django_file(legacy: Legacy, cookie: str) -> None:
    path = legacy.record_paths[cookie]
    text = path.read_text()
    path.write_text(text[:-1] + ("A" if text[-1] != "A" else "B"))


def _tamper_django_db(legacy: Legacy, cookie: str) -> None:
    with sqlite3.connect(legacy.source) as connection:
        (text,) = connection.execute(
            "SELECT session_data FROM django_session WHERE session_key = ?", (cookie,)
        ).fetchone()
        tampered = text[:-1] + ("A" if text[-1] != "A" else "B")
        connection.execute(
            "UPDATE django_session SET session_data = ? WHERE session_key = ?", (tampered, cookie)
        )
    connection.close()


def _truncate(legacy: Legacy, cookie: str) -> None:
    path = legacy.record_paths[cookie]
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


DAMAGE: dict[str, tuple[Callable[[Legacy, str], None], str]] = {
    "django-file": (_tamper_django_file, "bad_signature"),
    "django-db": (_tamper_django_db, "bad_signature"),
    "flask-session": (_truncate, "truncated"),
    "beaker-file": (_truncate, "truncated"),
    "pickle-dir": (_truncate, "truncated"),
}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_damaged_record_is_counted_by_reason_and_the_rest_are_copied(
    kind: str, seed: Seed
) -> None:
    legacy = seed(kind, SAMPLES)
    damaged, intact = list(legacy.sessions)
    damage, reason = DAMAGE[kind]
    damage(legacy, damaged)
    store = MemoryStore()

    report = legacy.migrate(store)

    assert (report.copied, report.undecodable) == (1, 1)
    assert report.by_reason == {reason: 1}
    assert f"1 undecodable ({reason}: 1)" in report.summary()
    assert migrated(legacy, store, damaged) is None
    assert migrated(legacy, store, intact) is not None
    # The fallback treats it as no session, rather than failing the request.
    assert legacy.open().load(damaged) is None


@pytest.mark.parametrize("kind", ["django-file", "django-db"])
def test_another_secret_key_makes_every_django_session_a_bad_signature(
    kind: str, seed: Seed
) -> None:
    legacy = seed(kind, SAMPLES)
    report = legacy.migrate(MemoryStore(), django_secret_key="not-the-project-key")
    assert (report.copied, report.undecodable, report.by_reason) == (0, 2, {"bad_signature": 2})


def test_django_placeholder_file_and_temp_files_are_not_sessions(seed: Seed) -> None:
    legacy = seed("django-file", SAMPLES)
    directory = Path(legacy.source)
    (directory / "sessionid0123456789abcdefghijklmnopqrstuv").write_bytes(b"")  # placeholder
    (directory / "sessionidabc_out_x1y2z3").write_bytes(b"half written")  # Django's temp file
    (directory / "unrelated.txt").write_bytes(b"not a session")

    report = legacy.migrate(MemoryStore())

    assert (report.copied, report.undecodable, report.by_reason) == (2, 1, {"empty": 1})


def test_cachelib_beaker_and_dotfile_leftovers_are_not_sessions(seed: Seed) -> None:
    flask = seed("flask-session", SAMPLES)
    (Path(flask.source) / "tmpab12cd.__wz_cache").write_bytes(b"\x00\x00")
    beaker = seed("beaker-file", SAMPLES)
    path = next(iter(beaker.record_paths.values()))
    path.with_name(path.name + ".temp").write_bytes(b"\x80")
    pickles = seed("pickle-dir", SAMPLES)
    (Path(pickles.source) / ".0123456789abcdef.tmp").write_bytes(b"\x80")

    for legacy in (flask, beaker, pickles):
        report = legacy.migrate(MemoryStore())
        assert (report.copied, report.undecodable) == (2, 0), legacy.kind


def test_values_the_envelope_cannot_hold_are_counted_unencodable(seed: Seed) -> None:
    legacy = seed("pickle-dir", [{"z": complex(1, 2)}, {"ok": 1}])
    report = legacy.migrate(MemoryStore())
    assert (report.copied, report.by_reason) == (1, {"unencodable": 1})


def test_a_pickle_that_is_not_a_dict_is_counted_not_a_session(seed: Seed) -> None:
    legacy = seed("pickle-dir", SAMPLES)
    (Path(legacy.source) / "0123456789abcdef").write_bytes(pickle.dumps(["a", "list"]))
    report = legacy.migrate(MemoryStore())
    assert (report.copied, report.by_reason) == (2, {"not_a_session": 1})


class _RunsCode:
    """A pickle that calls os.mkdir(marker) when loaded: what a planted file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _plant(kind: str, legacy: Legacy, payload: bytes) -> None:
    if kind == "pickle-dir":
        (Path(legacy.source) / "planted0123456789").write_bytes(payload)
    elif kind == "flask-session":
        header = struct.pack("I", int(time.time()) + HOUR)
        (Path(legacy.source) / ("f" * 64)).write_bytes(header + payload)
    else:
        next(iter(legacy.record_paths.values())).write_bytes(payload)


@pytest.mark.parametrize("kind", PICKLE_KINDS)
def test_pickle_stores_are_refused_without_trust_pickle_and_nothing_is_unpickled(
    kind: str, seed: Seed, tmp_path: Path
) -> None:
    legacy = seed(kind, SAMPLES)
    marker = tmp_path / "code-ran"
    _plant(kind, legacy, pickle.dumps(_RunsCode(marker)))

    with pytest.raises(ConfigurationError, match="trust-pickle.*your own application"):
        run_migration(kind, legacy.source, MemoryStore())
    with pytest.raises(ConfigurationError, match="unpickling runs whatever code"):
        open_source(kind, legacy.source)
    assert not marker.exists()

    # What the refusal prevents: with trust_pickle the planted file does run.
    report = run_migration(kind, legacy.source, MemoryStore(), trust_pickle=True)
    assert marker.exists()
    assert report.undecodable == 1


@pytest.mark.parametrize("kind", PICKLE_KINDS)
def test_trusting_pickle_logs_one_warning_per_source(
    kind: str, seed: Seed, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = seed(kind, SAMPLES)
    with caplog.at_level(logging.WARNING, logger="sessionguard.security"):
        assert legacy.migrate(MemoryStore()).copied == 2
    warnings = [r for r in caplog.records if r.name == "sessionguard.security"]
    assert len(warnings) == 1
    assert "only use it on files your own application wrote" in warnings[0].getMessage()


@pytest.mark.parametrize("kind", ["django-file", "django-db"])
def test_django_kinds_need_the_secret_key(kind: str, seed: Seed) -> None:
    legacy = seed(kind, SAMPLES)
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        run_migration(kind, legacy.source, MemoryStore())


def test_unknown_kind_and_missing_sources_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown source kind 'rails'.*django-file"):
        run_migration("rails", str(tmp_path), MemoryStore())
    with pytest.raises(ConfigurationError, match="does not exist"):
        run_migration("pickle-dir", str(tmp_path / "nope"), MemoryStore(), trust_pickle=True)
    missing_db = tmp_path / "missing.sqlite3"
    with pytest.raises(ConfigurationError, match="does not exist"):
        run_migration("django-db", str(missing_db), MemoryStore(), django_secret_key="k")
    assert not missing_db.exists()  # a typo never creates an empty database


def test_django_db_is_read_through_a_sqlalchemy_url(seed: Seed) -> None:
    legacy = seed("django-db", SAMPLES)
    legacy.source = f"sqlite:///{legacy.source}"
    store = MemoryStore()
    assert legacy.migrate(store).copied == 2
    for cookie, data in legacy.sessions.items():
        assert migrated(legacy, store, cookie) == data


def test_progress_is_called_with_the_running_count(seed: Seed) -> None:
    legacy = seed("pickle-dir", [*SAMPLES, {"third": 3}])
    seen: list[int] = []
    legacy.migrate(MemoryStore(), progress=seen.append)
    assert seen == [1, 2, 3]


def test_running_twice_overwrites_the_same_records(seed: Seed, tmp_path: Path) -> None:
    legacy = seed("django-file", SAMPLES)
    store = FileStore(tmp_path / "sessions", durable=False)
    try:
        assert legacy.migrate(store).copied == 2
        assert legacy.migrate(store).copied == 2
        stored = [p for p in (tmp_path / "sessions").rglob("legacy-*") if p.is_file()]
        assert len(stored) == 2
    finally:
        store.close()


def test_flask_session_deprecated_filesystem_backend_is_read(tmp_path: Path) -> None:
    legacy = seed_flask_session(tmp_path / "flask", SAMPLES, [None, None], backend="filesystem")
    store = MemoryStore()
    assert legacy.migrate(store).copied == 2
    for cookie, data in legacy.sessions.items():
        assert migrated(legacy, store, cookie) == data


def test_flask_session_msgpack_serialized_values_are_decoded(tmp_path: Path) -> None:
    # The form Flask-Session's MsgSpecSerializer gives a session: msgspec msgpack bytes.
    cache = FileSystemCache(str(tmp_path / "flask"))
    cache.set("session:serialized-sid-0123456789", msgspec.msgpack.encode({"user_id": 5}), 600)
    reader = open_source("flask-session", tmp_path / "flask", trust_pickle=True)
    assert reader.load("serialized-sid-0123456789") == {"user_id": 5}


def test_beaker_json_serializer_sessions_are_read(tmp_path: Path) -> None:
    from beaker.session import Session as BeakerSession  # type: ignore[import-untyped]

    session = BeakerSession({}, type="file", data_dir=str(tmp_path), data_serializer="json")
    session["user_id"] = 8
    session.save()
    reader = open_source("beaker-file", tmp_path, trust_pickle=True)
    data = reader.load(session.id)
    assert data is not None and data["user_id"] == 8
