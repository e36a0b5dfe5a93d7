"""Writer processes for the SIGKILL test, forked from one parent that has imported everything.

    python -m apps.writer DIRECTORY DURABLE(0|1) STRIPES

Starting a fresh interpreter per kill would spend most of the test importing
sessionguard, so this process imports it once and forks a writer per command read
from stdin, one per line:

* `start KEY FIRST`: fork a writer that saves `payload_for(n)` for `n = FIRST, FIRST+1, ...`
  under KEY through a FileStore on DIRECTORY, and prints `ready KEY PID` once its first
  save has returned. It stops by itself after `MAX_ITERATIONS` saves or `MAX_SECONDS`.
* `reap`: wait for every writer started so far to end, print `exit KEY STATUS` for each
  (STATUS is minus the signal number for a killed writer, else the exit code), then `reaped`.

Writers are reaped only on `reap`, so until then a writer's pid cannot be reused and the
test can SIGKILL it by pid safely. At end of input, writers still running are killed.
The payload is a pure function of `n` (1-200 KB, its size changing every iteration), so
the test can check that whatever it loads is exactly what some iteration wrote.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sys
import time
import traceback

from sessionguard.codec import Envelope, encode
from sessionguard.stores.file import FileStore

MAX_ITERATIONS = 100_000
MAX_SECONDS = 30.0
_EPOCH = 1_700_000_000.0


def body_for(counter: int) -> bytes:
    rng = random.Random(counter)
    return rng.randbytes(rng.randint(1024, 200 * 1024))


def payload_for(counter: int) -> bytes:
    body = body_for(counter)
    data = {"n": counter, "body": body, "sha256": hashlib.sha256(body).hexdigest()}
    return encode(Envelope(data, created_at=_EPOCH + counter))


def write_forever(store: FileStore, key: str, first: int) -> None:
    deadline = time.monotonic() + MAX_SECONDS
    for counter in range(first, first + MAX_ITERATIONS):
        store.save(key, payload_for(counter), expires_at=time.time() + 3600)
        if counter == first:
            os.write(1, f"ready {key} {os.getpid()}\n".encode())  # one write: never interleaved
        if time.monotonic() > deadline:
            return


def fork_writer(store: FileStore, key: str, first: int) -> int:
    sys.stdout.flush()  # so the child does not inherit, and later repeat, buffered output
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            write_forever(store, key, first)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            status = 1
        os._exit(status)
    return pid


def reap(writers: dict[int, str]) -> None:
    for pid, key in writers.items():
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"exit {key} {code}")
    writers.clear()
    print("reaped", flush=True)


def main(argv: list[str]) -> int:
    directory, durable, stripes = argv[1:]
    store = FileStore(directory, durable=durable == "1", stripes=int(stripes))
    writers: dict[int, str] = {}
    while line := sys.stdin.readline():
        command, *args = line.split()
        if command == "start":
            key, first = args
            writers[fork_writer(store, key, int(first))] = key
        elif command == "reap":
            reap(writers)
        else:
            print(f"unknown command {line!r}", file=sys.stderr, flush=True)
            return 2
    for pid in writers:  # the test went away: not reaped yet, so these pids are still ours
        os.kill(pid, signal.SIGKILL)
    reap(writers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
