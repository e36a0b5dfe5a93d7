"""A same-session burst through the real WSGI middleware while the test breaks the store:
what a failover does to the writes the app acknowledged.

Used by tests/integration/test_redis_failover.py (which asserts) and by the failover
benchmark (which prints the same counts with `replicas` on and off). Nothing here knows
about pytest.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sessionguard.stores.base import SyncStore
from sessionguard.wsgi import SessionMiddleware, get_session
from tests.servers import RedisCluster, RedisServer, free_port, stop, wait_for_port

SECRET = "failover-burst-secret"


def burst_app(store: SyncStore) -> Any:
    """`/set?k=K` sets K in the session; `/read` returns the session as JSON."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/set":
            session[environ["QUERY_STRING"].removeprefix("k=")] = True
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(dict(session)).encode()]

    return SessionMiddleware(app, SECRET, store=store)


@dataclass
class Burst:
    """What the clients saw: each write's key and answer, in order, with its time."""

    acknowledged: list[str] = field(default_factory=list)
    refused: list[tuple[float, int, str | None]] = field(
        default_factory=list
    )  # t, status, Retry-After
    answered_at: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lost(self, final: dict[str, Any]) -> list[str]:
        """The acknowledged writes the session no longer holds."""
        return [key for key in self.acknowledged if key not in final]

    def recovered_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first success after the last refusal that
        followed it (None: no success after it)."""
        refusals = [t for t, _, _ in self.refused if t >= moment]
        start = max(refusals, default=moment)
        after = [t for t, status in self.answered_at if t > start and status == 200]
        return min(after) - moment if after else None


def run_burst(
    store: SyncStore,
    *,
    clients: int,
    writes_per_client: int,
    breaks: Callable[[], None],
    break_after: int,
    run_after_break: float = 10.0,
    deadline: float = 60.0,
) -> tuple[Burst, dict[str, Any], float]:
    """`clients` threads each set up to `writes_per_client` keys of one session; once
    `break_after` writes were acknowledged, `breaks()` runs (killing a master, say) while
    they go on, for `run_after_break` seconds more. Returns what they saw, the session as
    read at the end, and when `breaks()` was called (time.monotonic)."""
    app = burst_app(store)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        first = _until_served(client, "/set?k=seed", {}, time.monotonic() + 20)
        cookie = first.headers["set-cookie"].split(";", 1)[0]
        burst = Burst()
        broke = threading.Event()
        broke_at = [0.0]
        ends = time.monotonic() + deadline

        def writer(number: int) -> None:
            for n in range(writes_per_client):
                now = time.monotonic()
                if now > ends or (broke.is_set() and now > broke_at[0] + run_after_break):
                    return
                key = f"w{number}-{n}"
                response = client.get(f"/set?k={key}", headers={"cookie": cookie})
                now = time.monotonic()
                with burst.lock:
                    burst.answered_at.append((now, response.status_code))
                    if response.status_code == 200:
                        burst.acknowledged.append(key)
                    else:
                        retry = response.headers.get("retry-after")
                        burst.refused.append((now, response.status_code, retry))
                    due = len(burst.acknowledged) >= break_after and not broke.is_set()
                    if due:
                        broke.set()
                if due:
                    broke_at[0] = time.monotonic()
                    breaks()
                if response.status_code != 200:
                    time.sleep(0.05)  # as a browser would not hammer a 503

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=deadline + 30)
        final = _until_served(client, "/read", {"cookie": cookie}, ends + 30).json()
    return burst, final, broke_at[0]


def _until_served(
    client: httpx.Client, path: str, headers: dict[str, str], until: float
) -> httpx.Response:
    """The first 200 answer to `path`, once the store answers (bounded in time)."""
    while True:
        response = client.get(path, headers=headers)
        if response.status_code == 200:
            return response
        if time.monotonic() > until:
            raise RuntimeError(f"{path} was not served again: {response.status_code}")
        time.sleep(0.1)


def master_of_session(cluster: RedisCluster, prefix: str) -> int:
    """The port of the master that holds the (one) session under `prefix`."""
    import redis.cluster  # here: `make bench` imports this module without redis-py

    with redis.cluster.RedisCluster.from_url(cluster.url) as client:
        (name,) = list(client.scan_iter(match=f"{prefix}*[^:]", count=1000))
        port: int = client.get_node_from_key(name).port
        return port


def kill_master_while_its_replica_lags(cluster: RedisCluster, prefix: str) -> Callable[[], None]:
    """A break for `run_burst` on a cluster: `kill_master_while_replicas_lag` for the
    session's master; 3 s later the dead master is restarted, as its supervisor would,
    and rejoins as a replica."""

    def breaks() -> None:
        master = master_of_session(cluster, prefix)
        replica = cluster.nodes[cluster.replica_of(master)]
        kill_master_while_replicas_lag(cluster.nodes[master], [replica])
        threading.Timer(3.0, cluster.restart, args=(master,)).start()

    return breaks


def kill_master_while_replicas_lag(master: RedisServer, replicas: list[RedisServer]) -> None:
    """The master keeps serving for a second while its replicas are cut off (a network
    hiccup: they fall behind), then dies; the replicas come back and one is promoted, with
    only what it had: the writes of that second are gone unless each waited for a
    replica (`replicas=1`)."""
    import redis  # here: `make bench` imports this module without redis-py

    stopped = [replica.process for replica in replicas if replica.process is not None]
    for process in stopped:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        # The links break: what the master sends from now on never reaches a replica (a
        # stopped process still receives into its socket: the kernel buffers it).
        with redis.Redis(port=master.port, socket_timeout=1.0) as client:
            client.client_kill_filter(_type="replica")
        time.sleep(1.0)  # writes go on meanwhile: acknowledged by the master alone?
        master.kill()
    finally:
        for process in stopped:
            os.kill(process.pid, signal.SIGCONT)


def wait_for_replicas(master: RedisServer, count: int) -> None:
    """Until `count` replicas are online and in sync with `master` (bounded)."""
    import redis  # here: `make bench` imports this module without redis-py

    deadline = time.monotonic() + 20
    with redis.Redis.from_url(master.url) as client:
        while time.monotonic() < deadline:
            info = client.info("replication")
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if len(online) >= count and all(r.get("state") == "online" for r in online):
                return
            time.sleep(0.1)
    raise RuntimeError(f"{count} replicas did not come online within 20 s")


@contextlib.contextmanager
def sentinel_group(binary: str, directory: Path) -> Iterator[tuple[list[RedisServer], int]]:
    """A master with two replicas (so one is left after a failover), both in sync, and a
    sentinel watching it as "sessions" that has found both; yields the servers (master
    first) and the sentinel's port, and stops them all."""
    # Without the delay, a master waits 5 s for more replicas before syncing the first.
    no_delay = ["--repl-diskless-sync-delay", "0"]
    (directory / "master").mkdir()
    master = RedisServer(binary, directory / "master", extra_args=no_delay)
    servers = [master]
    sentinel: subprocess.Popen[bytes] | None = None
    try:
        master.start()
        for n in range(2):
            (directory / f"replica{n}").mkdir()
            replica = RedisServer(
                binary,
                directory / f"replica{n}",
                extra_args=["--replicaof", "127.0.0.1", str(master.port), *no_delay],
            )
            replica.start()
            servers.append(replica)
        port = free_port()
        config = directory / "sentinel.conf"  # the sentinel rewrites it: it must be writable
        config.write_text(
            f"port {port}\nbind 127.0.0.1\n"
            f"sentinel monitor sessions 127.0.0.1 {master.port} 1\n"
            "sentinel down-after-milliseconds sessions 1000\n"
            "sentinel failover-timeout sessions 5000\n"
        )
        log = directory / "sentinel.log"
        with log.open("wb") as out:
            command = [binary, str(config), "--sentinel"]
            sentinel = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(port, sentinel, log)
        wait_for_replicas(master, 2)
        _wait_until_the_sentinel_knows(port, replicas=2)
        yield servers, port
    finally:
        stop(sentinel)
        for server in servers:
            server.kill()


def _wait_until_the_sentinel_knows(port: int, *, replicas: int) -> None:
    from redis.sentinel import Sentinel  # here: `make bench` imports this without redis-py

    watcher = Sentinel([("127.0.0.1", port)], socket_timeout=1.0)  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + 20
    while len(watcher.discover_slaves("sessions")) < replicas:  # type: ignore[no-untyped-call]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sentinel did not find {replicas} replicas within 20 s")
        time.sleep(0.1)
