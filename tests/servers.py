"""redis-server and PostgreSQL as child processes on free loopback ports.

Used by the test fixtures in `tests/conftest.py` and by `make bench-all`. Nothing here
knows about pytest: callers decide what a missing binary means.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(
        f"server did not listen on {port} within {START_TIMEOUT}s:\n{log.read_text()}"
    )


def stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class RedisServer:
    """A redis-server the tests own; `kill()` and `start()` simulate an outage."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    persistent: bool = False  # append-only file, fsynced always: data survives SIGKILL

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.directory / "redis.log"
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.directory), "--logfile", str(log)]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, log)

    def kill(self) -> None:
        stop(self.process, signal.SIGKILL)


@dataclass
class PostgresServer:
    """A PostgreSQL cluster the tests own (run as the `postgres` user when we are root)."""

    bindir: Path
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _user(self) -> str | None:
        # postgres refuses to run as root; the Debian package provides a `postgres` user.
        return "postgres" if os.geteuid() == 0 else None

    def init(self) -> None:
        user = self._user()
        if user is not None:
            uid = pwd.getpwnam(user).pw_uid
            os.chown(self.directory, uid, -1)
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.directory / "data"), "-U", "postgres"]
            + ["--auth=trust", "-E", "UTF8", "--no-sync"],
            user=user,
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        log = self.directory / "postgres.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.directory / "data")]
                + ["-p", str(self.port), "-k", str(self.directory), "-h", "127.0.0.1"]
                + ["-c", "fsync=off", "-c", "synchronous_commit=off"],
                user=self._user(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, log)
        self.sql("SELECT 1")  # listening is not yet accepting queries: wait for that too

    def set_read_only(self, read_only: bool) -> None:
        """Refuse (or allow again) writes in every new transaction, as a failover or a
        restart into recovery looks to clients; open connections get it too."""
        setting = "on" if read_only else "off"
        self.sql(f"ALTER SYSTEM SET default_transaction_read_only = {setting}")
        self.sql("SELECT pg_reload_conf()")

    def sql(self, statement: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            done = subprocess.run(
                ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-At"]
                + ["-v", "ON_ERROR_STOP=1", "-c", statement],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()


def postgres_bindir() -> Path | None:
    found = shutil.which("postgres") or shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    return candidates[0].parent if candidates else None
