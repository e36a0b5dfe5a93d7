"""`FileStore` judges a record file by its bytes alone: the deadline lives in its header,
damage anywhere makes it corrupt (never expired), and 0.1 records (deadline in the mtime)
keep working until they are next written.

Files are damaged in place here the way other programs damage them (a truncating writer,
a flipped bit, a pickle left by the old backend), which gives them a fresh mtime.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionguard.codec import Envelope, encode
from sessionguard.errors import CorruptReason, CorruptSessionError
from sessionguard.record import decode_record
from sessionguard.stores import FileStore, Record
from sessionguard.stores.base import Write
from sessionguard.stores.filelayout import old_path as _old_path
from tests.clock import FakeClock
from tests.record_files import deadline_of, framed, payload_of, record_path, write_v1

KEY = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
PAYLOAD = encode(Envelope({"user": "alice", "cart": [1, 2, 3]}, 1_700_000_000.0))


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[FileStore]:
    opened = FileStore(tmp_path / "sessions", clock=clock)
    yield opened
    opened.close()


def overwrite_in_place(path: Path, raw: bytes) -> None:
    """Rewrite a file as a foreign writer does: same inode, truncated, new bytes, new mtime."""
    with open(path, "r+b") as file:
        file.truncate(0)
        file.write(raw)


def corrupt_reason(record: Record | None) -> CorruptReason:
    assert record is not None, "a damaged record was hidden (as expired or missing)"
    with pytest.raises(CorruptSessionError) as caught:
        decode_record(record)
    return caught.value.reason


# -- the deadline is in the bytes ----------------------------------------------------------


@pytest.mark.parametrize("mtime", [0.0, 4_000_000_000.0], ids=["epoch", "year-2096"])
def test_the_deadline_comes_from_the_bytes_whatever_the_mtime(
    store: FileStore, clock: FakeClock, mtime: float
) -> None:
    version = store.save(KEY, PAYLOAD, expires_at=clock.now + 60)
    os.utime(record_path(store, KEY), (mtime, mtime))

    assert store.load(KEY) == Record(PAYLOAD, version or 0, clock.now + 60)
    clock.advance(61)
    assert store.load(KEY) is None
    assert store.touch(KEY, clock.now + 60) is False


def test_touch_rewrites_the_deadline_in_the_header_and_keeps_the_version(
    store: FileStore, clock: FakeClock
) -> None:
    version = store.save(KEY, PAYLOAD, expires_at=clock.now + 60)
    clock.advance(30)

    assert store.touch(KEY, clock.now + 60)

    path = record_path(store, KEY)
    assert path.read_bytes() == framed(PAYLOAD, clock.now + 60)
    assert store.load(KEY) == Record(PAYLOAD, version or 0, clock.now + 60)


# -- damage is corruption, never expiry ----------------------------------------------------


def test_every_truncation_of_a_record_is_corrupt_even_past_its_deadline(
    store: FileStore, clock: FakeClock
) -> None:
    store.save(KEY, PAYLOAD, expires_at=clock.now + 60)
    path = record_path(store, KEY)
    whole = path.read_bytes()
    clock.advance(3600)  # long past the deadline: damage must still show as damage
    for length in range(len(whole)):
        overwrite_in_place(path, whole[:length])
        expected = CorruptReason.EMPTY if length == 0 else CorruptReason.TRUNCATED
        assert corrupt_reason(store.load(KEY)) == expected, length
        (found,) = store.scan()
        assert not found.expired, length


def test_every_flipped_bit_of_a_record_is_corrupt(store: FileStore, clock: FakeClock) -> None:
    store.save(KEY, PAYLOAD, expires_at=clock.now + 60)
    path = record_path(store, KEY)
    whole = path.read_bytes()
    for position in range(len(whole)):
        for bit in range(8):
            flipped = bytearray(whole)
            flipped[position] ^= 1 << bit
            overwrite_in_place(path, bytes(flipped))
            reason = corrupt_reason(store.load(KEY))
            # A flip in the magic makes the file not ours (the codec names what it sees
            # instead); anywhere else, one of the two checksums catches it.
            if position >= 4:
                assert reason == CorruptReason.CHECKSUM_MISMATCH, (position, bit)


def test_a_record_is_judged_afresh_each_time_its_bytes_change(
    store: FileStore, clock: FakeClock
) -> None:
    # FileStore remembers the verdict on bytes it has seen intact: that must never stand
    # for other bytes at the same name, nor hide damage read a second time.
    store.save(KEY, PAYLOAD, expires_at=clock.now + 60)
    path = record_path(store, KEY)
    whole = path.read_bytes()
    damaged = bytearray(whole)
    damaged[-1] ^= 0x01
    for _ in range(2):
        intact = store.load(KEY)
        assert intact is not None and intact.damage is None and intact.payload == PAYLOAD
        overwrite_in_place(path, bytes(damaged))
        first, second = store.load(KEY), store.load(KEY)
        assert first is not None and second is not None
        assert first.damage is not None and second.damage is not None
        assert first.damage is not second.damage
        assert corrupt_reason(first) == CorruptReason.CHECKSUM_MISMATCH
        overwrite_in_place(path, whole)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (pickle.dumps({"user_id": 7}), CorruptReason.LEGACY_PICKLE),
        (b"<html>502 Bad Gateway</html>", CorruptReason.BAD_MAGIC),
        (b"", CorruptReason.EMPTY),
    ],
    ids=["pickle", "garbage", "empty"],
)
def test_a_foreign_file_is_corrupt_whatever_its_mtime(
    store: FileStore, clock: FakeClock, raw: bytes, reason: CorruptReason
) -> None:
    store.save(KEY, PAYLOAD, expires_at=clock.now + 60)
    path = record_path(store, KEY)
    for mtime in (0.0, clock.now, clock.now + 3600):
        overwrite_in_place(path, raw)
        os.utime(path, (mtime, mtime))
        assert corrupt_reason(store.load(KEY)) == reason


def test_a_damaged_record_is_never_touched_and_deleted_only_by_its_version(
    store: FileStore, clock: FakeClock
) -> None:
    store.save(KEY, PAYLOAD, expires_at=clock.now + 60)
    path = record_path(store, KEY)
    damaged = path.read_bytes()[:-1]
    overwrite_in_place(path, damaged)

    assert store.touch(KEY, clock.now + 600) is False
    assert path.read_bytes() == damaged, "touch gave damaged bytes a fresh header"
    record = store.load(KEY)
    assert record is not None and record.payload == damaged  # every byte, for quarantine
    assert store.delete(KEY, expected_version=record.version + 1) is False
    assert store.delete(KEY, expected_version=record.version) is True
    assert not path.exists()


def test_purge_removes_only_intact_expired_records(store: FileStore, clock: FakeClock) -> None:
    """Decided in the README: plain `purge` removes a record only when its intact bytes say
    it has expired; a corrupt record is kept, however old, for `purge --corrupt`."""
    keys = [f"k{n:02d}-{KEY[:30]}" for n in range(6)]
    for key in keys:
        store.save(key, PAYLOAD, expires_at=clock.now + 60)
    expired_intact, damaged_old, pickled_old, live, v1_expired, v1_damaged = keys
    damaged = record_path(store, damaged_old)
    overwrite_in_place(damaged, damaged.read_bytes()[:40])
    overwrite_in_place(record_path(store, pickled_old), pickle.dumps({"user_id": 7}))
    store.save(live, PAYLOAD, expires_at=clock.now + 7200)
    write_v1(record_path(store, v1_expired), PAYLOAD, clock.now + 30)
    write_v1(record_path(store, v1_damaged), PAYLOAD[:-1] + b"\x00", clock.now + 30)
    for key in (damaged_old, pickled_old):
        os.utime(record_path(store, key), (0, 0))
    clock.advance(3600)

    assert store.purge_expired() == 2

    gone = {key for key in keys if not record_path(store, key).exists()}
    assert gone == {expired_intact, v1_expired}


# -- records written by sessionguard 0.1 ---------------------------------------------------


def test_a_0_1_record_loads_with_its_mtime_as_the_deadline(
    store: FileStore, clock: FakeClock
) -> None:
    path = record_path(store, KEY)
    write_v1(path, PAYLOAD, clock.now + 60)

    record = store.load(KEY)
    assert record is not None and (record.payload, record.expires_at) == (PAYLOAD, clock.now + 60)
    assert decode_record(record).data == {"user": "alice", "cart": [1, 2, 3]}
    clock.advance(61)
    assert store.load(KEY) is None


def test_a_damaged_0_1_record_is_corrupt_not_expired(store: FileStore, clock: FakeClock) -> None:
    path = record_path(store, KEY)
    write_v1(path, PAYLOAD, clock.now + 60)
    overwrite_in_place(path, PAYLOAD[: len(PAYLOAD) // 2])  # fresh mtime: "now", i.e. past

    assert corrupt_reason(store.load(KEY)) == CorruptReason.TRUNCATED


def test_touch_gives_a_0_1_record_its_header_and_keeps_its_version(
    store: FileStore, clock: FakeClock
) -> None:
    path = record_path(store, KEY)
    write_v1(path, PAYLOAD, clock.now + 60)
    before = store.load(KEY)
    assert before is not None

    assert store.touch(KEY, clock.now + 600)

    assert payload_of(path) == PAYLOAD
    assert deadline_of(path) == clock.now + 600
    assert store.load(KEY) == Record(PAYLOAD, before.version, clock.now + 600)
    # A compare-and-swap against the version read before the upgrade still succeeds.
    assert store.save(
        KEY, PAYLOAD + b"", expires_at=clock.now + 60, expected_version=before.version
    )


def test_a_0_1_record_is_upgraded_by_its_next_save(store: FileStore, clock: FakeClock) -> None:
    path = record_path(store, KEY)
    write_v1(path, PAYLOAD, clock.now + 60)
    store.save(OTHER, PAYLOAD, expires_at=clock.now + 60)  # a neighbour in another format

    def keep_data(record: Record | None) -> Write | None:
        return None if record is None else Write(record.payload, clock.now + 90)

    store.update(KEY, keep_data)

    assert path.read_bytes() == framed(PAYLOAD, clock.now + 90)


# -- records in the two-level layout of earlier versions ---------------------------------


def old_record_path(store: FileStore, key: str) -> Path:
    return Path(_old_path(store.directory, key))


def test_a_record_in_the_old_two_level_layout_is_read_and_moved_up_by_its_next_write(
    store: FileStore, clock: FakeClock
) -> None:
    old = old_record_path(store, KEY)
    write_v1(old, PAYLOAD, clock.now + 60)

    record = store.load(KEY)
    assert record is not None and record.payload == PAYLOAD
    assert [found.key for found in store.scan()] == [KEY]
    assert store.touch(KEY, clock.now + 600)

    assert not old.exists()
    assert record_path(store, KEY).read_bytes() == framed(PAYLOAD, clock.now + 600)


def test_delete_and_purge_find_records_in_the_old_layout(
    store: FileStore, clock: FakeClock
) -> None:
    write_v1(old_record_path(store, KEY), PAYLOAD, clock.now + 60)
    write_v1(old_record_path(store, OTHER), PAYLOAD, clock.now + 30)
    clock.advance(45)

    assert store.purge_expired() == 1
    assert not old_record_path(store, OTHER).exists()
    assert store.delete(KEY) is True
    assert not old_record_path(store, KEY).exists()
