"""What every benchmark run needs: a real server subprocess, client processes, and numbers.

* `Subject` describes one thing under test: an app factory, the server that runs it and
  the environment it reads its configuration from.
* `Server` starts that server on `127.0.0.1` at a free port, waits until it answers,
  measures its CPU time, and always kills its whole process group at the end. Its
  stdout and stderr go to a log file, so that exceptions can be counted afterwards.
* `run_clients` runs one job per client *process* and starts them all at once, so the
  load generator is not held back by the GIL of a single Python process.
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
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx

__all__ = [
    "ROOT",
    "DEFAULT_WORKERS",
    "ClientError",
    "LatencyStats",
    "RunParams",
    "Server",
    "ServerError",
    "ServerKind",
    "Subject",
    "count_exceptions",
    "error_lines",
    "first_traceback",
    "free_port",
    "latency_stats",
    "machine_info",
    "remaining",
    "run_clients",
]

#: The directory that holds the `benchmarks` package; servers run from here.
ROOT = Path(__file__).resolve().parent.parent

ServerKind = Literal["gunicorn-sync", "uvicorn"]

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def remaining(deadline: float) -> float:
    """Seconds left until `deadline` (a `time.monotonic()` value), never negative."""
    return max(0.0, deadline - time.monotonic())


class Server:
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
        ready_timeout: float = 30.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.subject = subject
        self.workers = workers
        self.store_dir = os.fspath(store_dir)
        self.log_path = Path(log_path)
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

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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


@dataclass(frozen=True)
class _Failure:
    index: int
    text: str


def run_clients(
    target: Callable[[_J, Callable[[], None]], _R],
    jobs: Sequence[_J],
    *,
    deadline: float,
) -> list[_R]:
    """Run `target(job, ready)` for each job in its own process; return results in job order.

    `target` must be a module-level function (the processes are spawned, not forked).
    Each one prepares (connects, allocates) and then calls `ready()`, which returns when
    every client is prepared, so the timed part of all clients starts together. Processes
    still running at `deadline` (a `time.monotonic()` value) are killed and `ClientError`
    is raised.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs) + 1)
    results_queue: multiprocessing.Queue[tuple[int, _R] | _Failure] = context.Queue()
    processes = [
        context.Process(
            target=_client_main,
            args=(target, index, job, barrier, results_queue, deadline),
            name=f"bench-client-{index}",
            daemon=True,
        )
        for index, job in enumerate(jobs)
    ]
    try:
        for process in processes:
            process.start()
        try:
            barrier.wait(timeout=remaining(deadline))
        except Exception as exc:
            raise ClientError(f"client processes were not ready in time: {exc!r}") from exc
        results: dict[int, _R] = {}
        while len(results) < len(jobs):
            try:
                item = results_queue.get(timeout=remaining(deadline))
            except queue.Empty:
                raise ClientError(
                    f"{len(jobs) - len(results)} of {len(jobs)} clients did not finish in time"
                ) from None
            if isinstance(item, _Failure):
                raise ClientError(f"client {item.index} failed:\n{item.text}")
            results[item[0]] = item[1]
        return [results[index] for index in range(len(jobs))]
    finally:
        barrier.abort()  # releases anyone still waiting, if the run was cut short
        for process in processes:
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)
        results_queue.close()


def _client_main(
    target: Callable[[Any, Callable[[], None]], Any],
    index: int,
    job: Any,
    barrier: Any,
    results_queue: multiprocessing.Queue[Any],
    deadline: float,
) -> None:
    def ready() -> None:
        barrier.wait(timeout=remaining(deadline))

    try:
        result = target(job, ready)
    except BaseException:
        barrier.abort()
        results_queue.put(_Failure(index, traceback.format_exc()))
    else:
        results_queue.put((index, result))


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
    """What the numbers depend on: CPUs, load, Python and package versions, the commit."""
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
        "commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
