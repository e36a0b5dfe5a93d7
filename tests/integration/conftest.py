"""Real servers and client processes for the torture suite, always cleaned up.

Every wait here is bounded in time, and every process started here is stopped in fixture
teardown, whether the test passed or not: servers by SIGTERM to their master (SIGKILL
to the whole process group after a grace period), client processes by SIGKILL.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import pytest

from tests.servers import free_port

from .apps.client import COOKIE_NAME, session_cookies

INTEGRATION_DIR = Path(__file__).resolve().parent

ServerKind = Literal["gunicorn", "uvicorn"]
Op = tuple[str, str, dict[str, str]]  # method, path, query parameters
Result = dict[str, Any]  # one line of apps.client output

SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 15.0
CLIENT_TIMEOUT = 120.0
_PORT_ATTEMPTS = 3


def python_module_command(module: str, *args: str) -> list[str]:
    """Command line running `apps.<module>`; run it with `cwd=INTEGRATION_DIR`."""
    return [sys.executable, "-m", f"apps.{module}", *args]


def _exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place, so the pid (and its process group id) cannot be
    # reused until Popen.wait() reaps it: killpg below never hits a stranger's group.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def gunicorn_command(
    app: str, port: int, *, chdir: Path, workers: int, worker_class: str = "sync", threads: int = 1
) -> list[str]:
    """Command line serving the WSGI `app` ("module:callable") from `chdir` on 127.0.0.1."""
    return [
        *[sys.executable, "-m", "gunicorn", "--chdir", str(chdir), "--workers", str(workers)],
        *["--worker-class", worker_class, "--threads", str(threads)],
        *["--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5"],
        *["--log-level", "info", "--no-control-socket", app],
    ]


def _server_command(kind: ServerKind, port: int, workers: int) -> list[str]:
    bind = ["127.0.0.1", str(port)]
    if kind == "gunicorn":
        return gunicorn_command(
            "apps.wsgi_app:create_app()", port, chdir=INTEGRATION_DIR, workers=workers
        )
    return [
        *[sys.executable, "-m", "uvicorn", "--app-dir", str(INTEGRATION_DIR), "--factory"],
        *["--host", bind[0], "--port", bind[1], "--workers", str(workers)],
        *["--no-access-log", "--log-level", "info", "--timeout-graceful-shutdown", "5"],
        "apps.asgi_app:create_app",
    ]


@dataclass
class SessionEnv:
    """Where a server keeps its sessions, and how the tests reach into it."""

    store_dir: Path
    hold_dir: Path
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def variables(self) -> dict[str, str]:
        return {
            "SESSIONGUARD_TEST_STORE": str(self.store_dir),
            "SESSIONGUARD_TEST_SECRET": self.secret,
            "SESSIONGUARD_TEST_HOLD_DIR": str(self.hold_dir),
        }


class Server:
    """A server process group (gunicorn, uvicorn) on 127.0.0.1, on a port of its own.

    `command(port)` is its command line; it is ready once `ready_path` answers 200.
    """

    def __init__(
        self,
        name: str,
        command: Callable[[int], list[str]],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        ready_path: str = "/get",
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.ready_path = ready_path
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self._start(command, cwd, env)
        except BaseException:
            self.stop()
            raise

    def _start(
        self, command: Callable[[int], list[str]], cwd: Path, env: Mapping[str, str]
    ) -> None:
        for _ in range(_PORT_ATTEMPTS):
            port = free_port()
            self.base_url = f"http://127.0.0.1:{port}"
            with self.log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    command(port),
                    cwd=cwd,
                    env={**os.environ, **env},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so teardown gets every worker
                )
            if self._wait_until_ready():
                return
            # The port was taken between our probe and the server's bind: try another one.
            self.stop()
        raise RuntimeError(
            f"{self.name} did not start on any of {_PORT_ATTEMPTS} ports:\n{self.log()}"
        )

    def _wait_until_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if "in use" in self.log():  # "Address already in use" / "Connection in use"
                    return False
                if _exited(self._process.pid):
                    raise RuntimeError(f"{self.name} exited while starting; log:\n{self.log()}")
                try:
                    response = client.get(self.ready_path)
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                if response.status_code != 200:
                    raise RuntimeError(f"{self.name} answered {response}; log:\n{self.log()}")
                return True
        raise RuntimeError(f"{self.name} did not answer in {SERVER_START_TIMEOUT}s:\n{self.log()}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM to the master), then SIGKILL whatever is left. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if not _exited(process.pid):
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + SERVER_STOP_TIMEOUT
            while not _exited(process.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        finally:
            process.wait(timeout=SERVER_STOP_TIMEOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class ClientProcess:
    """One `apps.client` process; its output goes to a file, so it can never block on a pipe."""

    def __init__(
        self,
        base_url: str,
        cookie: str,
        ops: Sequence[Op],
        output: Path,
        cookie_name: str = COOKIE_NAME,
    ) -> None:
        self.output = output
        self.count = len(ops)
        spec = json.dumps(
            {"base_url": base_url, "cookie": cookie, "cookie_name": cookie_name, "ops": list(ops)}
        )
        with output.open("wb") as out:
            self.process = subprocess.Popen(
                python_module_command("client", spec),
                cwd=INTEGRATION_DIR,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def completed(self) -> int:
        """How many requests have completed so far."""
        return self.output.read_bytes().count(b"\n")

    def results(self) -> list[Result]:
        """Wait for the process to finish; return one result per request, in order."""
        returncode = self.process.wait(timeout=CLIENT_TIMEOUT)
        text = self.output.read_text()
        assert returncode == 0, f"client process failed ({returncode}):\n{text}"
        results = [json.loads(line) for line in text.splitlines()]
        assert len(results) == self.count, text
        return results

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        self.process.wait(timeout=SERVER_STOP_TIMEOUT)


class StartServer(Protocol):
    def __call__(self, kind: ServerKind, *, workers: int) -> Server: ...


class StartClients(Protocol):
    def __call__(
        self,
        base_url: str,
        cookie: str,
        op_lists: Sequence[Sequence[Op]],
        *,
        cookie_name: str = COOKIE_NAME,
    ) -> list[ClientProcess]: ...


@contextlib.contextmanager
def client_processes(directory: Path) -> Iterator[StartClients]:
    """`start(url, cookie, [ops, ...])` starts one `apps.client` process per op list, with
    its output in `directory`; every process is killed on exit."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:  # kills every client even if one kill fails

        def start(
            base_url: str,
            cookie: str,
            op_lists: Sequence[Sequence[Op]],
            *,
            cookie_name: str = COOKIE_NAME,
        ) -> list[ClientProcess]:
            started = []
            for ops in op_lists:
                output = directory / f"client-{next(numbers)}.jsonl"
                started.append(ClientProcess(base_url, cookie, ops, output, cookie_name))
                stack.callback(started[-1].kill)
            return started

        yield start


@pytest.fixture
def session_env(tmp_path: Path) -> SessionEnv:
    env = SessionEnv(store_dir=tmp_path / "store", hold_dir=tmp_path / "hold")
    env.store_dir.mkdir()
    env.hold_dir.mkdir()
    return env


@pytest.fixture
def start_server(tmp_path: Path, session_env: SessionEnv) -> Iterator[StartServer]:
    """Start a server on the test's session store: `start_server("gunicorn", workers=4)`."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:  # stops every server even if one stop fails

        def start(kind: ServerKind, *, workers: int) -> Server:
            server = Server(
                kind,
                lambda port: _server_command(kind, port, workers),
                cwd=INTEGRATION_DIR,
                env=session_env.variables(),
                log_path=tmp_path / f"{kind}-{next(numbers)}.log",
            )
            stack.callback(server.stop)
            return server

        yield start


@pytest.fixture
def start_clients(tmp_path: Path) -> Iterator[StartClients]:
    """Start one `apps.client` process per op list: `start_clients(url, cookie, [ops, ...])`."""
    with client_processes(tmp_path) as start:
        yield start


def cookie_value(response: httpx.Response) -> str:
    """The signed value of the single session cookie the response sets."""
    values = session_cookies(response)
    assert len(values) == 1, response.headers
    return values[0]


def session_cookie(value: str) -> dict[str, str]:
    """Headers sending exactly this session cookie (never the client's cookie jar)."""
    return {"Cookie": f"session={value}"}


def assert_clean_server_log(log: str) -> None:
    """No traceback, decode error, corruption warning or error line in the server's output."""
    bad = [
        line
        for line in log.splitlines()
        if any(word in line.lower() for word in ("traceback", "corrupt", "error"))
    ]
    assert not bad, "server log has errors:\n" + log


def by_status(results: Sequence[Mapping[str, Any]]) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts
