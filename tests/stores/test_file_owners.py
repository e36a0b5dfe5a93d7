"""FileStore's per-user index on disk: what a killed writer leaves, what purge cleans,
and that nothing planted in the index directories is followed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionguard.errors import StoreUnavailableError
from sessionguard.stores import FileStore
from sessionguard.stores.fileowners import USERS_DIR, claim
from tests.clock import FakeClock

KEY = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[FileStore]:
    opened = FileStore(tmp_path / "sessions", durable=False, clock=clock)
    yield opened
    opened.close()


def user_dirs(store: FileStore) -> list[Path]:
    root = Path(store.directory, USERS_DIR)
    return sorted(root.iterdir()) if root.exists() else []


def entries(store: FileStore) -> int:
    # A user's directory stays when emptied: a login may be creating an entry in it.
    return sum(len(list(d.iterdir())) for d in user_dirs(store))


def test_no_user_id_appears_in_a_file_name(store: FileStore, clock: FakeClock) -> None:
    store.save(KEY, b"x", expires_at=clock.now + 60, owner="alice@example.com")
    names = [p.name for p in Path(store.directory).rglob("*")]
    assert not any("alice" in name for name in names)
    assert [len(d.name) for d in user_dirs(store)] == [32]


def test_a_writer_killed_after_claiming_leaves_an_entry_that_is_not_listed_and_is_purged(
    store: FileStore, clock: FakeClock
) -> None:
    store.save(KEY, b"x", expires_at=clock.now + 60, owner="alice")
    # Killed between step 2 (claim: new entry, new .owner file) and the record's write:
    # a brand-new session of bob's whose record never appeared.
    parent = store._locate(OTHER)[0]
    claim(store._layout, parent, OTHER, "bob", durable=False)
    assert store.sessions_of("bob") == []  # no record: not a session

    store.purge_expired()

    assert entries(store) == 1  # alice's only
    assert not Path(parent, f".{OTHER}.owner").exists()
    assert store.sessions_of("alice") == [KEY]


def test_a_writer_killed_before_releasing_the_previous_owner_leaves_nothing_visible(
    store: FileStore, clock: FakeClock
) -> None:
    store.save(KEY, b"x", expires_at=clock.now + 60, owner="alice")
    parent = store._locate(KEY)[0]
    claim(store._layout, parent, KEY, "bob", durable=False)  # steps 1 and 2 of a login
    store.save(KEY, b"y", expires_at=clock.now + 60)  # the record, then killed: no step 4

    assert store.sessions_of("alice") == []  # its .owner names bob now
    assert store.sessions_of("bob") == [KEY]
    store.purge_expired()
    assert entries(store) == 1


def test_a_link_planted_as_the_index_directory_is_refused_and_not_followed(
    store: FileStore, clock: FakeClock, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, Path(store.directory, USERS_DIR))

    with pytest.raises(StoreUnavailableError, match="symbolic link"):
        store.save(KEY, b"x", expires_at=clock.now + 60, owner="alice")

    assert list(elsewhere.iterdir()) == []
    assert store.load(KEY) is None  # nothing was written: the previous state stands


def test_scan_and_purge_leave_the_index_files_alone(store: FileStore, clock: FakeClock) -> None:
    store.save(KEY, b"x", expires_at=clock.now + 60, owner="alice")
    assert [found.key for found in store.scan()] == [KEY]
    assert store.leftover_temp_files() == []
    assert store.purge_expired() == 0
    assert store.sessions_of("alice") == [KEY]


def test_a_write_that_fails_leaves_the_record_with_its_owner(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = FileStore(tmp_path / "small", durable=False, clock=clock, max_record_size=256)
    store.save(KEY, b"x", expires_at=clock.now + 60, owner="alice")
    # Refused before the rename (the record would be over max_record_size): nothing moves.
    with pytest.raises(StoreUnavailableError, match="max_record_size"):
        store.save(KEY, b"y" * 1000, expires_at=clock.now + 60, owner="bob")
    assert store.owner_of(KEY) == "alice"
    assert (store.sessions_of("alice"), store.sessions_of("bob")) == ([KEY], [])
    store.close()
