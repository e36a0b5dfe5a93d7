"""What every benchmark run needs: a real server subprocess, client processes, and numbers.

* `Subject` describes one thing under test: an app factory, the server that runs it and
  the environment it reads its configuration from.
* `Server` starts that server on `127.0.0.1` at a free port, waits until it answers,
  measures its CPU time, and always kills its whole process group at the end. Its
  stdout and stderr go to a log file, so that exceptions can be counted afterwards.
* `ClientPool` keeps one spawned *process* per client for the whole run and starts each
  job on all of them at once, so the load generator is not held back by the GIL of a
  single Python process, and no subject pays for starting Python eight times.
* `warm_up` sends a few writes to every worker of a fresh server.
* `latency_stats`, `count_exceptions` and `machine_info` turn what was seen into numbers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import math
import multiprocessing
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

# Shared with the test suite, which starts its servers on free ports too, and stops them
# on the way out of a `with` block.
from tests.servers import Managed, free_port

__all__ = [
    "RESULTS_DIR",
    "ROOT",
    "DEFAULT_WORKERS",
    "ClientError",
    "ClientPool",
    "LatencyStats",
    "RunParams",
    "Server",
    "ServerError",
    "ServerKind",
    "Subject",
    "count_exceptions",
    "error_lines",
    "first_traceback",
    "latency_stats",
    "machine_info",
    "remaining",
    "warm_up",
]

#: The directory that holds the `benchmarks` package; servers run from here.
ROOT = Path(__file__).resolve().parent.parent
#: Where the report goes unless `--output-dir` says otherwise.
RESULTS_DIR = ROOT / "benchmarks" / "results"

ServerKind = Literal["gunicorn-sync", "uvicorn"]
#: Where a subject keeps its sessions; "file" subjects are compared with sessionguard's FileStore.
Storage = Literal["file", "sqlite", "cookie", "redis", "postgres"]
#: A server the runner starts for the subjects that need it (`--all`), and the variable
#: that carries its URL into the subject's environment.
SERVICE_URL_ENV: Mapping[str, str] = {
    "redis": "BENCH_REDIS_URL",
    "postgres": "BENCH_POSTGRES_URL",
}

#: Workers per server when `--workers` is not given. The machine this was tuned on has
#: 2 cores: sync workers block on file I/O, so twice the cores keeps the CPU busy; an
#: event loop per core is enough for uvicorn.
DEFAULT_WORKERS: Mapping[ServerKind, int] = {"gunicorn-sync": 4, "uvicorn": 2}

_J = TypeVar("_J")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Subject:
    """One configuration under test.

    `app` names a zero-argument factory, `"package.module:function"`, that builds the
    app from environment variables: `env` plus `BENCH_STORE_DIR`, an empty directory the
    harness creates for each run and removes afterwards.
    """

    name: str
    description: str
    server: ServerKind
    app: str
    env: Mapping[str, str] = field(default_factory=dict)
    #: What the results table shows about this configuration (merge, durable, store).
    settings: Mapping[str, object] = field(default_factory=dict)
    cookie_name: str = "session"
    #: Turns a cookie value into the session id it names; `None` when the cookie holds the
    #: data itself (Starlette's signed cookie), so re-issued ids cannot be counted.
    session_id: Callable[[str], str] | None = None
    #: The subject this one is compared against (same setup, one feature switched off).
    baseline: str | None = None
    #: Importable modules the subject needs; it is skipped when one is missing.
    requires: tuple[str, ...] = ()
    #: sessionguard itself, or one of the session systems it is compared with.
    family: Literal["sessionguard", "peer"] = "peer"
    storage: Storage = "file"
    #: Servers (keys of `SERVICE_URL_ENV`) the subject needs; their URLs arrive in `env`.
    services: tuple[str, ...] = ()
    #: In the default run (`make bench`); the others run under `--all` or when named by `-s`.
    default: bool = True
    #: Peers serving the same app on the same server with their own session engine (the
    #: Django project on Django's engines): the server scenarios' tables give this
    #: subject's req/s over theirs, and both lost-update counts.
    counterparts: tuple[str, ...] = ()

    @property
    def is_sessionguard(self) -> bool:
        return self.family == "sessionguard"

    def missing(self) -> list[str]:
        return [name for name in self.requires if importlib.util.find_spec(name) is None]


@dataclass(frozen=True)
class RunParams:
    """The load of one run: `clients` concurrent clients sending `requests` each."""

    clients: int
    requests: int
    #: Hard limit in seconds on one subject's run, server start-up included.
    time_limit: float


class ServerError(RuntimeError):
    """The server did not start, or stopped answering."""


class ClientError(RuntimeError):
    """A client process failed or did not finish in time."""


def remaining(deadline: float) -> float:
    """Seconds left until `deadline` (a `time.monotonic()` value), never negative."""
    return max(0.0, deadline - time.monotonic())


class Server(Managed):
    """A subject's server as a subprocess of its own process group; use it as a context manager.

    Leaving the context kills the group (master and workers) whatever happened, first
    with SIGTERM and then, after `stop_grace` seconds, with SIGKILL.
    """

    def __init__(
        self,
        subject: Subject,
        *,
        workers: int,
        store_dir: str | os.PathLike[str],
        log_path: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 30.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.subject = subject
        self.workers = workers
        self.store_dir = os.fspath(store_dir)
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        module, _, factory = self.subject.app.partition(":")
        address = f"127.0.0.1:{self.port}"
        if self.subject.server == "gunicorn-sync":
            return [
                *(sys.executable, "-m", "gunicorn", "--worker-class", "sync"),
                *("--workers", str(self.workers), "--bind", address, "--chdir", str(ROOT)),
                *("--timeout", "30", "--graceful-timeout", "2", "--log-level", "info"),
                # Its default control socket is one path per user, shared by every gunicorn.
                "--no-control-socket",
                f"{module}:{factory}()",
            ]
        # The uvicorn CLI with one fix to its listening socket; see serve_uvicorn's docstring.
        return [
            *(sys.executable, "-m", "benchmarks.serve_uvicorn"),
            *("--factory", f"{module}:{factory}", "--workers", str(self.workers)),
            *("--host", "127.0.0.1", "--port", str(self.port), "--app-dir", str(ROOT)),
            *("--no-access-log", "--log-level", "info", "--timeout-graceful-shutdown", "2"),
        ]

    def start(self) -> None:
        """Start the server and return once it answers `GET /health` with 200."""
        env = {
            **os.environ,
            **self.subject.env,
            **self.env,
            "BENCH_STORE_DIR": self.store_dir,
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches every worker
            )
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._process.poll() is not None:
                raise ServerError(
                    f"{self.subject.name}: server exited with {self._process.returncode} "
                    f"before answering; log tail:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.subject.name}: no answer on {self.base_url} within "
                    f"{self.ready_timeout:.0f}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the server's process group: SIGTERM, then SIGKILL for whatever is left."""
        process = self._process
        if process is None:
            return
        self._process = None
        group = process.pid  # start_new_session made it the group leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_grace)
        except subprocess.TimeoutExpired:
            pass
        # Also after a clean exit: a worker orphaned by its master would still be in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait(timeout=self.stop_grace)

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time used so far by the server's processes (Linux only)."""
        if self._process is None:
            return None
        return _group_cpu_seconds(self._process.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _enter(self) -> None:
        self.start()

    def _exit(self, *, failed: bool) -> None:
        self.stop()


def _group_cpu_seconds(group: int) -> float | None:
    ticks = 0
    try:
        entries = os.listdir("/proc")
    except FileNotFoundError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # Fields after the command name, which is in parentheses and may contain spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == group:  # pgrp
            # utime, stime, and cutime, cstime of children already reaped.
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


_TRACEBACK = "Traceback (most recent call last)"
_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b")


def count_exceptions(log: str) -> tuple[int, int]:
    """Return (tracebacks, lines logged at ERROR or CRITICAL) in a server log."""
    return log.count(_TRACEBACK), len(error_lines(log, limit=None))


def error_lines(log: str, limit: int | None = 5) -> list[str]:
    """The lines of a server log logged at ERROR or CRITICAL, the first `limit` of them."""
    found = [line for line in log.splitlines() if _ERROR_LINE.search(line)]
    return found if limit is None else found[:limit]


def first_traceback(log: str, limit: int = 4000) -> str | None:
    """The first traceback in a server log, cut to `limit` characters, for the JSON results."""
    start = log.find(_TRACEBACK)
    return None if start < 0 else log[start : start + limit]


# -- client processes ---------------------------------------------------------------------


class ClientPool(Managed):
    """Client processes, spawned once and reused by every run of every subject.

    `run(target, jobs, deadline=...)` hands job *i* to process *i*, which calls
    `target(job, ready)`: it prepares (connects, opens its session) and then calls
    `ready()`, which returns once every process is prepared, so the timed part of all
    clients starts together. `target` must be a module-level function: the processes are
    spawned, not forked, and receive it by name. Spawning eight Python processes costs
    seconds of CPU on two cores; a pool pays that once, not once per subject and scenario.

    When a run fails or misses its deadline the processes are killed, and the next run
    starts new ones. Leaving the context (or `close()`) stops them all.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._inboxes: list[multiprocessing.Queue[Any]] = []
        self._outbox: multiprocessing.Queue[Any] | None = None
        self._runs = 0

    def run(
        self,
        target: Callable[[_J, Callable[[], None]], _R],
        jobs: Sequence[_J],
        *,
        deadline: float,
    ) -> list[_R]:
        """Run the jobs, one per process; return their results in job order.

        Raises `ClientError` when a client fails, or when the clients are not ready or not
        finished by `deadline` (a `time.monotonic()` value).
        """
        if len(jobs) > self.size:
            raise ValueError(f"{len(jobs)} jobs for a pool of {self.size} clients")
        if not self._processes:
            self._start()
        self._runs += 1
        run_id = self._runs
        finished = False
        try:
            for index, job in enumerate(jobs):
                self._inboxes[index].put(("job", run_id, target, job, deadline))
            self._collect(run_id, "ready", len(jobs), deadline, "were not ready in time")
            for index in range(len(jobs)):
                self._inboxes[index].put(("go", run_id))
            results = self._collect(run_id, "done", len(jobs), deadline, "did not finish in time")
            finished = True
            return [results[index] for index in range(len(jobs))]
        finally:
            if not finished:
                # Some client may still be sending: never let it overlap the next run.
                self.close(kill=True)

    def close(self, *, kill: bool = False) -> None:
        """Stop every client process: ask politely unless `kill`, then kill what is left."""
        processes, inboxes, outbox = self._processes, self._inboxes, self._outbox
        self._processes, self._inboxes, self._outbox = [], [], None
        if not kill:
            for inbox in inboxes:
                inbox.put(None)
        for process in processes:
            if not kill:
                process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
            process.join(timeout=2.0)
        for q in (*inboxes, *([outbox] if outbox is not None else [])):
            q.cancel_join_thread()  # a dead reader must not block our exit
            q.close()

    def _start(self) -> None:
        self._outbox = self._context.Queue()
        for index in range(self.size):
            inbox: multiprocessing.Queue[Any] = self._context.Queue()
            process = self._context.Process(
                target=_client_main,
                args=(index, inbox, self._outbox),
                name=f"bench-client-{index}",
                daemon=True,
            )
            process.start()
            self._inboxes.append(inbox)
            self._processes.append(process)

    def _collect(
        self, run_id: int, kind: str, count: int, deadline: float, late: str
    ) -> dict[int, Any]:
        assert self._outbox is not None
        found: dict[int, Any] = {}
        while len(found) < count:
            try:
                tag, message_run, index, payload = self._outbox.get(timeout=remaining(deadline))
            except queue.Empty:
                raise ClientError(f"{count - len(found)} of {count} clients {late}") from None
            if message_run != run_id:
                continue  # left over from a run that was given up
            if tag == "failed":
                raise ClientError(f"client {index} failed:\n{payload}")
            if tag != kind:
                raise ClientError(f"client {index} sent {tag!r} while the pool waited for {kind!r}")
            found[index] = payload
        return found

    def _exit(self, *, failed: bool) -> None:
        self.close(kill=failed)


def _client_main(
    index: int, inbox: multiprocessing.Queue[Any], outbox: multiprocessing.Queue[Any]
) -> None:
    """One client process: run the jobs it is handed until it is handed `None`, or until
    its parent is gone (killed: nobody would ever hand it `None`)."""
    parent = os.getppid()
    while True:
        try:
            message = inbox.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if message is None:
            return
        _, run_id, target, job, deadline = message

        def ready(run_id: int = run_id, deadline: float = deadline) -> None:
            outbox.put(("ready", run_id, index, None))
            try:
                go = inbox.get(timeout=remaining(deadline))
            except queue.Empty:
                raise ClientError("the other clients were not ready in time") from None
            if go != ("go", run_id):
                raise ClientError(f"expected the start of run {run_id}, got {go!r}")

        try:
            result = target(job, ready)
        except BaseException:
            outbox.put(("failed", run_id, index, traceback.format_exc()))
        else:
            outbox.put(("done", run_id, index, result))


def warm_up(
    base_url: str, cookie_name: str, workers: int, deadline: float, *, requests: int = 5
) -> None:
    """Send a few writes on a session of their own, from two threads per server worker.

    A worker's first requests pay for imports, connection pools, thread pools and
    directory creation; none of that belongs in a measurement.
    """
    timeout = min(30.0, max(remaining(deadline), 1.0))
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        response = client.post("/set/warm")
    values = [
        value.strip().strip('"')
        for header in response.headers.get_list("set-cookie")
        for key, sep, value in [header.split(";", 1)[0].partition("=")]
        if sep and key.strip() == cookie_name
    ]
    if response.status_code != 200 or not values:
        raise ServerError(
            f"warm-up: POST /set/warm answered {response.status_code} without a "
            f"{cookie_name!r} cookie; headers: {response.headers!r}"
        )
    cookie = f"{cookie_name}={values[-1]}"

    def writer(thread: int) -> None:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            for i in range(requests):
                if time.monotonic() >= deadline:
                    return
                client.post(f"/set/warm-{thread}-{i}", headers={"cookie": cookie})
                client.get("/keys", headers={"cookie": cookie})

    with ThreadPoolExecutor(max_workers=2 * workers) as pool:
        list(pool.map(writer, range(2 * workers)))


# -- statistics --------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    """Summarise request latencies (in seconds); percentiles by the nearest-rank method."""
    if not seconds:
        nan = math.nan
        return LatencyStats(0, nan, nan, nan, nan, nan)
    ordered = sorted(seconds)

    def percentile(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    return LatencyStats(
        count=len(ordered),
        mean_ms=sum(ordered) / len(ordered) * 1000,
        p50_ms=percentile(0.50),
        p90_ms=percentile(0.90),
        p99_ms=percentile(0.99),
        max_ms=ordered[-1] * 1000,
    )


# -- machine -----------------------------------------------------------------------------

_PACKAGES = (
    "sessionguard",
    "msgpack",
    "httpx",
    "gunicorn",
    "uvicorn",
    "uvloop",
    "httptools",
    "flask",
    "starlette",
)


def machine_info() -> dict[str, object]:
    """What the numbers depend on: CPUs, load, Python and package versions (the commit is
    `benchmarks.checkout`'s)."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
    }
