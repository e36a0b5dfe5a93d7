"""File-op floor: FileStore's save and load against the bare system calls they cannot avoid.

The floor of a crash-safe save is: write the record file's bytes to a temp file in the
record's directory, `os.replace` it over the record, and, for `durable=True`, fsync the
file before the rename and the directory after it. The floor of a load is: open, read,
close. Both use the exact bytes FileStore wrote for the envelope of the ~1 KB session the
overhead scenario uses, in the same directory, on the same file system. `touch` (what a
read-only request does at most about once a minute) is shown against the save floor.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

from ..section import Bar, Section, Target
from .measure import Timing, fmt_ratio, fmt_us, markdown_table, paired_ratio
from .overhead import SESSION

__all__ = ["run"]

#: The issue's targets: FileStore.save at most this many times the floor, same fsync
#: setting; a load and decode as the middleware does it, at most this many times a bare read.
TARGET_RATIO = 1.2
READ_TARGET_RATIO = 2.0
#: Ops timed together, one each per round in random order: (names, at most seconds,
#: at most rounds). Each group's first op is the floor of the others.
GROUPS = (
    (("floor", "save", "touch"), 1.0, 2000),
    (("floor+fsync", "save-durable", "touch-durable"), 1.5, 800),
    (("read", "load", "load+decode", "load+decode+verify", "load+decoder"), 0.4, 4000),
)
WARM_UP = 20


def _time_interleaved(
    ops: Mapping[str, Callable[[], object]], rounds: int, deadline: float
) -> dict[str, Timing]:
    """Time single ops, each op once per round in a random order, until `deadline`.

    File operations on a busy machine vary by several times from one second to the
    next. Timing an op against its floor a few hundred microseconds apart, in random
    order, and taking the median of those per-round ratios cancels that out.
    """
    names = list(ops)
    for name in names:
        for _ in range(WARM_UP):
            ops[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    shuffle = random.Random(0).shuffle
    for round_no in range(max(rounds, 3)):
        if round_no >= 3 and time.monotonic() >= deadline:
            break
        shuffle(names)
        for name in names:
            start = time.perf_counter_ns()
            ops[name]()
            samples[name].append(time.perf_counter_ns() - start)
    return {name: Timing(statistics.median(v), tuple(v), 1) for name, v in samples.items()}


def _floor_write(directory: str, payload: bytes, *, fsync: bool) -> Callable[[], None]:
    path = os.path.join(directory, "floor-record")
    tmp = os.path.join(directory, ".floor-record.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC

    def write() -> None:
        fd = os.open(tmp, flags, 0o600)
        try:
            os.write(fd, payload)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if fsync:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    return write


def _floor_read(path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.read(fd, 1 << 16)
        finally:
            os.close(fd)

    return read


def run(quick: bool, deadline: float) -> Section:
    from sessionguard.codec import Envelope, KeyedCodec, decode, encode, record_keys
    from sessionguard.cookie import new_id
    from sessionguard.stores.file import FileStore

    started = time.monotonic()
    signing_keys = record_keys([b"bench-secret"])
    # Signed, as the middleware writes it.
    payload = encode(Envelope(SESSION, time.time()), key=signing_keys[0])
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as directory:
        stores = {durable: FileStore(directory, durable=durable) for durable in (False, True)}
        keys = {durable: new_id() for durable in (False, True)}
        for durable, store in stores.items():
            store.save(keys[durable], payload, expires_at=time.time() + 3600)
        # Each floor works in the directory its FileStore put the record in.
        parents = {durable: stores[durable]._locate(keys[durable])[0] for durable in stores}
        store, key = stores[False], keys[False]
        record_path = store._locate(key)[1]
        with open(record_path, "rb") as file:
            stored = file.read()  # the payload, with whatever header the store adds

        def save(durable: bool) -> Callable[[], object]:
            target, name = stores[durable], keys[durable]
            return lambda: target.save(name, payload, expires_at=time.time() + 3600)

        def touch(durable: bool) -> Callable[[], object]:
            target, name = stores[durable], keys[durable]
            return lambda: target.touch(name, time.time() + 3600)

        def load_decode() -> object:
            record = store.load(key)
            assert record is not None
            return decode(record.payload)

        def load_decode_verify() -> object:
            record = store.load(key)
            assert record is not None
            return decode(record.payload, keys=signing_keys)

        codec = KeyedCodec(signing_keys)  # the middleware's, which keeps its verdicts

        def load_decoder() -> object:
            record = store.load(key)
            assert record is not None
            return codec.decode(record.payload)

        ops: dict[str, Callable[[], object]] = {
            "floor": _floor_write(parents[False], stored, fsync=False),
            "save": save(False),
            "touch": touch(False),
            "floor+fsync": _floor_write(parents[True], stored, fsync=True),
            "save-durable": save(True),
            "touch-durable": touch(True),
            "read": _floor_read(record_path),
            "load": lambda: store.load(key),
            "load+decode": load_decode,
            "load+decode+verify": load_decode_verify,
            "load+decoder": load_decoder,
        }
        if store.load(key) is None or _floor_read(record_path)() != stored:
            raise RuntimeError("the file-op floor's set-up did not store the payload")
        timings: dict[str, Timing] = {}
        scale = 0.25 if quick else 1.0
        for group, seconds, rounds in GROUPS:
            group_deadline = min(deadline, time.monotonic() + seconds * scale)
            timings |= _time_interleaved(
                {name: ops[name] for name in group}, int(rounds * scale), group_deadline
            )
        for each in stores.values():
            each.close()
    return _section(timings, len(payload), len(stored), quick, time.monotonic() - started)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _section(
    timings: Mapping[str, Timing], size: int, stored_size: int, quick: bool, wall: float
) -> Section:
    us = {name: timing.us for name, timing in timings.items()}
    floors = {
        "save": "floor",
        "touch": "floor",
        "save-durable": "floor+fsync",
        "touch-durable": "floor+fsync",
        "load": "read",
        "load+decode": "read",
        "load+decode+verify": "read",
        "load+decoder": "read",
    }
    ratio = {name: paired_ratio(timings[name], timings[floor]) for name, floor in floors.items()}
    rows_spec = [
        ("temp write + os.replace (floor)", "floor", "floor", False),
        ("**FileStore.save**, durable=False", "save", "floor", True),
        ("**FileStore.touch**, durable=False", "touch", "floor", True),
        (
            "temp write + fsync + os.replace + fsync dir (floor)",
            "floor+fsync",
            "floor+fsync",
            False,
        ),
        ("**FileStore.save**, durable=True", "save-durable", "floor+fsync", True),
        ("**FileStore.touch**, durable=True", "touch-durable", "floor+fsync", True),
        ("open + read + close (floor)", "read", "read", False),
        ("**FileStore.load**", "load", "read", True),
        ("**FileStore.load** + codec.decode", "load+decode", "read", True),
        (
            "**FileStore.load** + codec.decode, signature checked",
            "load+decode+verify",
            "read",
            True,
        ),
        ("**FileStore.load** + the middleware's codec", "load+decoder", "read", True),
    ]
    rows, bars = [], []
    for label, name, floor, is_sg in rows_spec:
        timing = timings[name]
        rows.append(
            [
                label,
                fmt_us(us[name]),
                fmt_ratio(ratio[name]) if name != floor else "1x",
                fmt_us(_percentile(timing.batches_ns, 0.9) / 1000),
                str(len(timing.batches_ns)),
            ]
        )
        panel = "load" if floor == "read" else "save"
        bars.append(
            Bar(
                f"file-op floor, {panel}: µs per op (lower is better)",
                label.replace("**", ""),
                us[name],
                is_sg,
            )
        )
    targets = [
        Target(
            f"FileStore.save (durable={durable}) within {TARGET_RATIO}x of the file-op floor "
            "at the same fsync setting",
            f"{ratio[name]:.2f}x ({fmt_us(us[name])} vs {fmt_us(us[floor])} µs)",
            ratio[name] <= TARGET_RATIO,
        )
        for durable, name, floor in (
            (False, "save", "floor"),
            (True, "save-durable", "floor+fsync"),
        )
    ]
    targets.append(
        Target(
            f"FileStore.load + decode as the middleware reads a session (a record read "
            f"before) within {READ_TARGET_RATIO:g}x of open + read + close",
            f"{ratio['load+decoder']:.2f}x ({fmt_us(us['load+decoder'])} vs "
            f"{fmt_us(us['read'])} µs); the first read of the bytes: "
            f"{ratio['load+decode+verify']:.2f}x",
            ratio["load+decoder"] <= READ_TARGET_RATIO,
        )
    )
    table = markdown_table(["operation", "median µs", "× floor", "p90 µs", "ops timed"], rows)
    notes = (
        "Each op is timed singly, interleaved with its floor (and the other ops of its group) "
        "in a random order every round; *median µs* is over single ops, *× floor* is the median "
        "of the per-round ratios to the floor, so that a slow spell of this shared machine "
        f"cancels out ({wall:.0f} s in all). Payload "
        f"{size} B (the ~1 KB session's envelope) and its file's {stored_size - size} B header, "
        "every case in the fan-out directory of its FileStore. `FileStore.save` is an "
        "unconditional save: besides the floor's calls it hashes the key to find the "
        "directory, opens and `flock`s a stripe lock file, and hashes the payload for its "
        "version and the header. `FileStore.touch` moves the deadline (stored in the file's "
        "header): under the stripe lock it reads and checks the record and writes it again "
        "with the new deadline, as a save does. `FileStore.load` checks the header and the "
        "payload's checksum; `codec.decode` checks the envelope's checksum and parses it, "
        "and with the signature checked also verifies its keyed BLAKE2b signature, as the "
        "middleware does the first time it reads those bytes. *The middleware's codec* "
        "(`codec.KeyedCodec`) keeps the verdict on bytes it has verified or written: a "
        "session read again, unchanged, is only copied out (a dict copy, or `marshal` for "
        "nested lists and dicts) rather than checked and parsed again; FileStore likewise "
        "keeps the header check of file bytes it has seen intact. *p90 µs*: how slow the "
        "slow ops were on this machine."
    )
    return Section(
        key="file-op-floor",
        title="File-op floor: FileStore against the bare system calls",
        markdown=f"{table}\n\n{notes}\n",
        data={
            "unit": "µs per op (median of single ops)",
            "payload_bytes": size,
            "file_bytes": stored_size,
            "ratios_to_floor": ratio,
            "wall_s": round(wall, 2),
            "timings": {
                name: {
                    "us": timing.us,
                    "p10_us": _percentile(timing.batches_ns, 0.1) / 1000,
                    "p90_us": _percentile(timing.batches_ns, 0.9) / 1000,
                    "ops_timed": len(timing.batches_ns),
                }
                for name, timing in timings.items()
            },
        },
        targets=targets,
        bars=bars,
    )
