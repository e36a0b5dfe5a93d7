"""SIGKILL a process while it saves a session through FileStore, hundreds of times.

Each round starts one writer process per key (forked by `apps.writer`, which imports
sessionguard once), waits until it reports its first save done, lets it keep saving for
a random 0-20 ms and kills it with SIGKILL. After every kill the record must load,
decode and be byte for byte what one of the writer's iterations wrote (never an older
one than the last round saw), and the store directory must hold nothing but the
records, at most one temp file per key and the stripe lock files. Finally
`purge_expired()` removes the temp files the killed writers left.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessionguard.codec import decode
from sessionguard.stores.file import FileStore

from .apps.writer import payload_for
from .conftest import INTEGRATION_DIR, python_module_command

pytestmark = pytest.mark.integration

KEYS = [f"kill-{i}" for i in range(4)]  # one writer per key, all four running at once
ROUNDS = 60  # 60 rounds x 4 keys = 240 kills per durability mode
STRIPES = 4  # a small lock set: writers of different keys may share a stripe lock
MAX_KILL_DELAY = 0.020
TIMEOUT = 30.0


class WriterHost:
    """The `apps.writer` process: forks a writer per `start`, reports their ends on `reap`."""

    def __init__(self, store: FileStore, stderr: Path) -> None:
        self.stderr = stderr
        args = (store.directory, "1" if store.durable else "0", str(STRIPES))
        with stderr.open("wb") as err:
            self.process = subprocess.Popen(
                python_module_command("writer", *args),
                cwd=INTEGRATION_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._buffer = b""

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def read_line(self, timeout: float) -> str | None:
        """The next line of output, or `None` if none came within `timeout` seconds."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 4096)
            assert chunk, f"the writer host exited:\n{self.errors()}"
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def close(self) -> None:
        """End of input: the host kills and reaps any writer still running, then exits."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def start_writer_host(tmp_path: Path) -> Iterator[Callable[[FileStore], WriterHost]]:
    hosts: list[WriterHost] = []

    def start(store: FileStore) -> WriterHost:
        hosts.append(WriterHost(store, tmp_path / f"writer-host-{len(hosts)}.err"))
        return hosts[-1]

    yield start
    for host in hosts:
        host.close()


def kill_round(host: WriterHost, firsts: Mapping[str, int], rng: random.Random) -> dict[str, int]:
    """Start a writer per key, SIGKILL each 0-20 ms after it reports ready, reap them all.

    Returns each writer's end status (minus the signal number when killed).
    """
    for key, first in firsts.items():
        host.send(f"start {key} {first}")
    due: dict[str, tuple[int, float]] = {}  # key -> (pid, when to kill it)
    killed: set[str] = set()
    deadline = time.monotonic() + TIMEOUT
    while len(killed) < len(firsts):
        now = time.monotonic()
        assert now < deadline, f"writers {set(firsts) - set(due)} never got ready:\n{host.errors()}"
        for key, (pid, kill_at) in due.items():
            if key not in killed and kill_at <= now:
                # The host reaps writers only on "reap", so this pid is still our writer.
                os.kill(pid, signal.SIGKILL)
                killed.add(key)
        next_kill = min((at for key, (_, at) in due.items() if key not in killed), default=None)
        line = host.read_line(0.05 if next_kill is None else max(0.0, next_kill - now))
        if line is not None:
            word, key, pid_text = line.split()
            assert word == "ready" and key in firsts, line
            due[key] = (int(pid_text), time.monotonic() + rng.uniform(0, MAX_KILL_DELAY))
    host.send("reap")
    statuses: dict[str, int] = {}
    while (line := host.read_line(TIMEOUT)) != "reaped":
        assert line is not None, f"the writers were not reaped:\n{host.errors()}"
        word, key, status = line.split()
        statuses[key] = int(status)
    return statuses


def check_record(store: FileStore, key: str, first: int) -> int:
    """The record is complete and is exactly what an iteration from `first` on wrote.

    Returns that iteration's counter.
    """
    record = store.load(key)
    assert record is not None, f"{key}: no record after its first save completed"
    envelope = decode(record.payload)  # raises CorruptSessionError on a torn record
    counter = envelope.data["n"]
    assert isinstance(counter, int) and counter >= first, (key, first, counter)
    assert record.payload == payload_for(counter), f"{key}: iteration {counter} altered"
    return counter


@dataclass
class Layout:
    records: list[str]
    temp_files: list[str]


def check_layout(store: FileStore, keys: Sequence[str]) -> Layout:
    """Only records, at most one temp file per key beside its record, and the stripe locks."""
    root = Path(store.directory)
    lock_dir = root / ".locks"
    assert set(os.listdir(lock_dir)) <= {f"{stripe:02x}" for stripe in range(STRIPES)}
    records = {Path(store._locate(key)[1]): key for key in keys}
    temp_files = {Path(store._locate(key)[0], f".{key}.tmp"): key for key in keys}
    layout = Layout([], [])
    for path in walk_files(root):
        if path in records:
            layout.records.append(records[path])
        elif path in temp_files:
            layout.temp_files.append(temp_files[path])
        else:
            assert path.parent == lock_dir, f"stray file {path}"
    return layout


def walk_files(root: Path) -> Iterator[Path]:
    for directory, _, files in os.walk(root):
        for name in files:
            yield Path(directory) / name


@pytest.mark.parametrize("durable", [False, True], ids=["not-durable", "durable"])
def test_sigkill_mid_save_never_leaves_a_torn_record_or_stray_files(
    tmp_path: Path, durable: bool, start_writer_host: Callable[[FileStore], WriterHost]
) -> None:
    store = FileStore(tmp_path / "store", durable=durable, stripes=STRIPES)
    host = start_writer_host(store)
    rng = random.Random(f"kill-midwrite-{durable}")
    next_counter = dict.fromkeys(KEYS, 1)
    kills = rounds_with_temp_file = 0

    for round_number in range(ROUNDS):
        statuses = kill_round(host, next_counter, rng)
        assert statuses == dict.fromkeys(KEYS, -signal.SIGKILL), host.errors()
        kills += len(statuses)
        for key in KEYS:
            # Each writer's first save completed, so the record is at least that iteration.
            next_counter[key] = check_record(store, key, next_counter[key]) + 1
        layout = check_layout(store, KEYS)
        assert sorted(layout.records) == sorted(KEYS), round_number
        rounds_with_temp_file += bool(layout.temp_files)

    assert kills == ROUNDS * len(KEYS)
    # Some kills must have hit a write in progress (in practice 30% of rounds or more),
    # or the purge below would have nothing to prove.
    assert rounds_with_temp_file > 0
    assert store.purge_expired() == 0  # every record is live; only orphaned temp files go
    layout = check_layout(store, KEYS)
    assert layout.temp_files == [] and sorted(layout.records) == sorted(KEYS)
    for key in KEYS:
        record = store.load(key)
        assert record is not None and record.payload == payload_for(next_counter[key] - 1)
