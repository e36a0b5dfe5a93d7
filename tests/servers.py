"""redis-server and PostgreSQL as child processes on free loopback ports.

Used by the test fixtures in `tests/conftest.py` and by `make bench-all`. Nothing here
knows about pytest: callers decide what a missing binary means.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

START_TIMEOUT = 20.0
#: Where every server listens, whatever other address it is given.
LOOPBACK = "127.0.0.1"


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


def children_of(parent: int) -> list[int]:
    """The pids whose parent is `parent` (a postmaster's backends, walsender, ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        if int(stat.rpartition(")")[2].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class Managed:
    """`with` support for what starts something and must stop it whatever happens.

    Entering calls `_enter()` and, should that raise, `_exit(failed=True)`, so that
    nothing half-started is left behind; leaving calls `_exit(failed=...)`, `failed`
    telling whether an exception is on its way out. (Used by `tests.hosts` and the
    benchmarks' harness too.)
    """

    def _enter(self) -> None:
        """What entering starts: nothing, unless a subclass says otherwise."""

    def _exit(self, *, failed: bool) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._enter()
        except BaseException:
            self._exit(failed=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(failed=exc is not None)


@dataclass
class RedisServer:
    """A redis-server the tests own; `kill()` and `start()` simulate an outage."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    persistent: bool = False  # append-only file, fsynced always: data survives SIGKILL
    extra_args: list[str] = field(default_factory=list)  # appended to the command line

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
        args += self.extra_args
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, log)

    def kill(self) -> None:
        stop(self.process, signal.SIGKILL)


CLUSTER_SLOTS = 16384


def distinct_free_ports(count: int) -> list[int]:
    """`count` different free ports (free_port alone may hand out one twice)."""
    ports: list[int] = []
    deadline = time.monotonic() + START_TIMEOUT
    while len(ports) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"found only {len(ports)} distinct free ports")
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class RedisCluster:
    """A Redis Cluster the tests own: 3 masters and 3 replicas on loopback ports.

    Each node runs in its own subdirectory of `directory` (where it keeps its nodes.conf)
    and talks to the others on a bus port of its own (`--cluster-port`), chosen free too:
    the default, port + 10000, may be taken or above 65535.

    With an `address` other than loopback, the nodes listen on it too and announce it,
    so that clients elsewhere (another network namespace) are redirected to addresses
    they can reach.
    """

    binary: str
    cli: str
    directory: Path
    size: int = 6  # masters + replicas, one replica per master
    nodes: dict[int, RedisServer] = field(default_factory=dict)
    address: str = LOOPBACK

    @property
    def ports(self) -> list[int]:
        return list(self.nodes)

    @property
    def url(self) -> str:
        """For `redis.cluster.RedisCluster.from_url` (which accepts no db other than 0)."""
        return f"redis://{self.address}:{self.ports[0]}/0"

    def _node_args(self, bus_port: int) -> list[str]:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", "1000", "--cluster-port", str(bus_port)]
        # a replica syncs at once, not after the default 5 s wait for others
        args += ["--repl-diskless-sync-delay", "0"]
        if self.address != LOOPBACK:
            # clients elsewhere connect from the address's subnet, not from loopback
            args += ["--bind", LOOPBACK, self.address, "--protected-mode", "no"]
            args += ["--cluster-announce-ip", self.address]
        return args

    def start(self) -> None:
        """Start the nodes, create the cluster and wait until it serves every slot."""
        try:
            ports = distinct_free_ports(2 * self.size)
            for port, bus_port in zip(ports[: self.size], ports[self.size :], strict=True):
                directory = self.directory / str(port)
                directory.mkdir()
                self.nodes[port] = RedisServer(
                    self.binary, directory, port=port, extra_args=self._node_args(bus_port)
                )
                self.nodes[port].start()
            created = subprocess.run(
                [self.cli, "--cluster", "create"]
                + [f"{self.address}:{port}" for port in self.ports]
                + ["--cluster-replicas", "1", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
            )
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}")
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise

    def wait_until_ok(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every running node sees all slots served, each master has a replica
        in sync (when one is running), and a cluster client can write and read keys."""
        deadline = time.monotonic() + timeout
        problem = "not checked yet"
        while time.monotonic() < deadline:
            problem = self._problem()
            if not problem:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the cluster was not ready within {timeout}s: {problem}")

    def _problem(self) -> str:
        """What keeps the cluster from being ready, or "" when nothing does."""
        import redis.cluster  # here: `make bench` imports this module without redis-py

        try:
            for port in self.running():
                with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0) as client:
                    info = client.cluster("info")
                    if info.get("cluster_state") != "ok":
                        return f"{port} reports cluster_state:{info.get('cluster_state')}"
                    if int(info.get("cluster_slots_ok", 0)) != CLUSTER_SLOTS:
                        return f"{port} sees {info.get('cluster_slots_ok')} slots served"
                    replication = client.info("replication")
                    if replication["role"] == "slave":
                        if replication.get("master_link_status") != "up":
                            return f"replica {port} is not in sync with its master"
            with redis.cluster.RedisCluster(
                host="127.0.0.1", port=self.running()[0], socket_timeout=1.0
            ) as cluster:
                # Slots 7667, 3538, 15793, 11664, 7543, 3414, 15669, 11540: at least two in
                # each master's third of the slots, as `redis-cli --cluster create` splits them.
                for n in range(8):
                    cluster.set(f"sessionguard-cluster-check:{n}", n, ex=60)
                    if cluster.get(f"sessionguard-cluster-check:{n}") != str(n).encode():
                        return f"key {n} did not read back"
        except (redis.RedisError, IndexError) as error:
            return f"{type(error).__name__}: {error}"
        return ""

    def running(self) -> list[int]:
        return [
            port
            for port, node in self.nodes.items()
            if node.process is not None and node.process.poll() is None
        ]

    def _nodes(self) -> dict[int, dict[str, Any]]:
        """CLUSTER NODES as a running node sees it, by port."""
        import redis

        errors: list[str] = []
        for port in self.running():
            try:
                with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0) as client:
                    nodes: dict[str, dict[str, Any]] = client.cluster("nodes")
            except redis.RedisError as error:
                errors.append(f"{port}: {error}")
                continue
            return {int(address.rsplit(":", 1)[1]): node for address, node in nodes.items()}
        raise RuntimeError(f"no cluster node answered CLUSTER NODES: {errors}")

    def masters(self) -> list[int]:
        """The ports of the nodes that are masters now (and not failed)."""
        return sorted(
            port
            for port, node in self._nodes().items()
            if "master" in node["flags"] and "fail" not in node["flags"]
        )

    def replicas_of(self, master_port: int) -> list[int]:
        nodes = self._nodes()
        master_id = nodes[master_port]["node_id"]
        return sorted(port for port, node in nodes.items() if node["master_id"] == master_id)

    def replica_of(self, master_port: int) -> int:
        """The port of the master's one replica."""
        replicas = self.replicas_of(master_port)
        if len(replicas) != 1:
            raise RuntimeError(f"{master_port} has replicas {replicas}, not exactly one")
        return replicas[0]

    def kill(self, port: int) -> None:
        """SIGKILL one node (the others notice within --cluster-node-timeout, 1 s)."""
        self.nodes[port].kill()

    def restart(self, port: int) -> None:
        """Start a stopped node again: it rejoins the cluster from its nodes.conf (with no
        data: nothing is persisted). Call `wait_until_ok()` to wait for the cluster."""
        self.nodes[port].start()

    def stop(self) -> None:
        """SIGTERM every node, then wait for each (SIGKILL after 10 s). A node a test
        froze (SIGSTOP) is resumed first: a stopped process never sees the SIGTERM."""
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            stop(node.process)


@dataclass
class PostgresServer:
    """A PostgreSQL cluster the tests own (run as the `postgres` user when we are root).

    It listens on loopback, and on `address` too when that is another address.
    """

    bindir: Path
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    address: str = LOOPBACK
    settings: dict[str, str] = field(default_factory=dict)  # `-c name=value` at start

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.address}:{self.port}/postgres"

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
        listen = LOOPBACK if self.address == LOOPBACK else f"{LOOPBACK},{self.address}"
        settings = [
            arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")
        ]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.directory / "data")]
                + ["-p", str(self.port), "-k", str(self.directory), "-h", listen]
                + ["-c", "fsync=off", "-c", "synchronous_commit=off", *settings],
                user=self._user(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, log)
        self.sql("SELECT 1")  # listening is not yet accepting queries: wait for that too

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open connections are dropped, committed data is kept
        (written out by the shutdown checkpoint); SIGKILL if it takes over 10 s."""
        if self.process is not None:
            self.thaw()  # a stopped process would never see the signal
        stop(self.process, signal.SIGINT)

    def restart(self) -> None:
        """Fast shutdown, then start again on the same port and data directory."""
        self.stop()
        self.start()

    def _pids(self) -> list[int]:
        """The postmaster, then each of its children (backends, checkpointer, ...)."""
        if self.process is None or self.process.poll() is not None:
            return []
        postmaster = self.process.pid
        return [postmaster, *children_of(postmaster)]

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every child: connections stay open and nothing
        answers, as with a hung host or a network partition. `thaw()` undoes it.

        The postmaster goes first, so that it forks no process after the children were
        listed."""
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT every process `freeze()` stopped (harmless on a running server)."""
        for pid in reversed(self._pids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, bindir: Path) -> Iterator[PostgresServer]:
        """A new cluster of its own, started; at exit thawed, stopped and removed.

        Not under pytest's tmp_path: that is private to root, and the server may run as
        `postgres`."""
        directory = Path(tempfile.mkdtemp(prefix="sessionguard-postgres-"))
        server = cls(bindir, directory)
        try:
            server.init()
            server.start()
            yield server
        finally:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)

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
