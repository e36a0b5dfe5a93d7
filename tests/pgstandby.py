"""A PostgreSQL primary with a streaming standby, and a switch to the standby.

Used by tests/integration/test_postgres_standby.py. Builds on `tests.servers.PostgresServer`
(the same binaries, users and directories) without changing it: the standby is a
`PostgresServer` whose data directory comes from `pg_basebackup -R` instead of `initdb`.
Nothing here knows about pytest; every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import START_TIMEOUT, PostgresServer, children_of

#: How long the standby may take to stream (and, with synchronous replication, to be the
#: synchronous standby) after it starts.
STREAMING_TIMEOUT = 20.0


def _server_user() -> str | None:
    # As PostgresServer: postgres refuses to run as root; Debian provides a `postgres` user.
    return "postgres" if os.geteuid() == 0 else None


def _new_directory(prefix: str) -> Path:
    """A directory outside pytest's tmp_path (private to root), owned by the server user."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    user = _server_user()
    if user is not None:
        os.chown(directory, pwd.getpwnam(user).pw_uid, -1)
    return directory


def _wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:g} s")
        time.sleep(0.05)


@dataclass
class Switch:
    """When each step of a switch to the standby happened (time.monotonic)."""

    cut_at: float = 0.0  # replication cut: the standby lags from here on
    killed_at: float = 0.0  # the primary frozen, then SIGKILLed, every process of it
    promoted_at: float = 0.0  # pg_promote() returned on the standby


@dataclass
class ReplicatedPostgres:
    """A primary and a standby streaming from it, each on its own loopback port."""

    primary: PostgresServer
    standby: PostgresServer
    stopped_receiver: int | None = None  # the standby's walreceiver, while SIGSTOPped
    switch: Switch = field(default_factory=Switch)

    @property
    def url(self) -> str:
        """Both servers, for libpq to try in order: the first that accepts writes wins."""
        hosts = "&".join(f"host=127.0.0.1:{server.port}" for server in (self.primary, self.standby))
        return f"postgresql+psycopg://postgres@/postgres?{hosts}&target_session_attrs=read-write"

    def replication_state(self) -> str:
        """`state|sync_state` of the standby as the primary sees it ("" if not connected)."""
        return self.primary.sql("SELECT state || '|' || sync_state FROM pg_stat_replication")

    def set_synchronous(self, synchronous: bool) -> None:
        """Commits on the primary wait for the standby (or not), and wait for it here
        until the primary sees the standby as it should.

        `synchronous_commit` is set for the database: PostgresServer starts the server with
        `-c synchronous_commit=off`, which a database setting overrides, and which would
        make no commit wait for the standby. `synchronous_standby_names` goes into the
        primary's own postgresql.auto.conf, which the standby (copied before) does not
        have: promoted, it waits for no standby of its own."""
        self.primary.sql("ALTER DATABASE postgres SET synchronous_commit = on")
        names = "*" if synchronous else ""
        self.primary.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        self.primary.sql("SELECT pg_reload_conf()")
        expected = "streaming|sync" if synchronous else "streaming|async"
        _wait_until(
            lambda: self.replication_state() == expected,
            f"the standby was not {expected!r} (last: {self.replication_state()!r})",
            STREAMING_TIMEOUT,
        )

    def cut_replication(self) -> None:
        """The standby falls behind, as behind a network hiccup: its walreceiver stops
        (SIGSTOP: it reads nothing more, and cannot reconnect) and the primary's walsender
        is terminated, so whatever the primary writes from now on never reaches it.
        `resume_standby()` lets the walreceiver run again (it reads what it had been sent
        before the cut, then finds the connection closed)."""
        self.switch.cut_at = time.monotonic()
        pid = int(self.standby.sql("SELECT pid FROM pg_stat_wal_receiver"))
        os.kill(pid, signal.SIGSTOP)
        self.stopped_receiver = pid
        self.primary.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'walsender'"
        )

    def resume_standby(self) -> None:
        if self.stopped_receiver is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.stopped_receiver, signal.SIGCONT)
            self.stopped_receiver = None

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every child of it, as a crash of its host
        would: nothing more is written or sent, every connection to it drops at once."""
        process = self.primary.process
        if process is None or process.poll() is not None:
            return
        self.switch.killed_at = time.monotonic()
        self.primary.freeze()  # no process forks another between the listing and the kill
        for pid in [process.pid, *children_of(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=START_TIMEOUT)

    def promote(self) -> None:
        """`pg_promote()` on the standby, waiting (bounded) until it accepts writes."""
        self.resume_standby()  # promotion waits for the walreceiver to exit
        done = self.standby.sql(f"SELECT pg_promote(true, {int(STREAMING_TIMEOUT)})")
        if done != "t":
            raise RuntimeError(f"the standby was not promoted: pg_promote() said {done!r}")
        self.switch.promoted_at = time.monotonic()

    def fail_over_while_standby_lags(self, lag: float) -> Callable[[], None]:
        """A break for `tests.failover.run_burst`: replication is cut for `lag` seconds
        while the primary goes on serving (acknowledging writes the standby never gets,
        unless commits wait for it), then the primary is killed and the standby promoted."""

        def breaks() -> None:
            self.cut_replication()
            time.sleep(lag)
            self.kill_primary()
            self.promote()

        return breaks


@contextlib.contextmanager
def replicated_postgres(bindir: Path, *, synchronous: bool) -> Iterator[ReplicatedPostgres]:
    """A new primary and a standby streaming from it, synchronously or not; at exit
    both are stopped (thawed first) and their directories removed."""
    with contextlib.ExitStack() as cleanup:
        primary = PostgresServer(bindir, _new_directory("sessionguard-primary-"))
        cleanup.callback(shutil.rmtree, primary.directory, ignore_errors=True)
        primary.init()
        cleanup.callback(primary.stop)
        primary.start()

        standby = PostgresServer(bindir, _new_directory("sessionguard-standby-"))
        cleanup.callback(shutil.rmtree, standby.directory, ignore_errors=True)
        subprocess.run(
            [str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port)]
            + ["-U", "postgres", "-D", str(standby.directory / "data"), "-R", "-X", "stream"],
            user=_server_user(),
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        cleanup.callback(standby.stop)  # thaws a stopped walreceiver first
        standby.start()

        pair = ReplicatedPostgres(primary, standby)
        cleanup.callback(pair.resume_standby)
        pair.set_synchronous(synchronous)
        yield pair
