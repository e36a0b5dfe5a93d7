"""App servers on the hosts of a `tests.hosts.HostNetwork`, and the stores they share.

* `shared_stores` starts a Redis Cluster (3 masters, 3 replicas) and a PostgreSQL on the
  network's store bridge and yields the URLs the hosts reach them by.
* `HostServer` is the benchmarks' `Server` run inside a host's namespace
  (`ip netns exec`), listening on the host's front address; the harness's start-up,
  health check, CPU accounting and process-group kill apply unchanged.
* `serving` starts one server per host at once and stops them all on the way out.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.hosts import BridgePostgres, BridgeRedisCluster, Host, HostNetwork
from tests.servers import postgres_bindir, stop

from ..harness import Server, ServerKind, Subject
from ..subjects._sessionguard import session_id
from .app import STORE_ENV, URL_ENV, StoreKind

__all__ = [
    "STORES",
    "WORKERS",
    "HostServer",
    "Stores",
    "host_subject",
    "serving",
    "shared_stores",
]

STORES: tuple[StoreKind, ...] = ("redis-cluster", "postgres")
#: Workers per host. Every host shares the machine's cores, so these are kept small:
#: 3 hosts already run 6 gunicorn workers (or 3 uvicorn ones) on 2 cores.
WORKERS: Mapping[ServerKind, int] = {"gunicorn-sync": 2, "uvicorn": 1}
#: PostgreSQL settings. A host cut off between a save's UPDATE and its COMMIT leaves its
#: transaction open on the server, holding the session's row lock, until its connection
#: is closed (once the link is back); meanwhile every other host's save of that session
#: would wait for the lock and give up with a 503 after SQLStore's `io_timeout` (1 s).
#: sessionguard's transactions never sit idle, so ending an idle one after 500 ms (below
#: `io_timeout`) costs them nothing and lets the other hosts through. In production, set
#: it on the role the sessions use: `ALTER ROLE ... SET idle_in_transaction_session_timeout`.
POSTGRES_SETTINGS: Mapping[str, str] = {
    "idle_in_transaction_session_timeout": "500ms",
    "max_connections": "300",  # 3 hosts' pools, sync and async, with room to spare
}


@dataclass(frozen=True)
class Stores:
    """The URLs the hosts reach each store by, and the programs a missing store lacks."""

    urls: Mapping[StoreKind, str]
    unavailable: Mapping[StoreKind, str]


@contextlib.contextmanager
def shared_stores(network: HostNetwork, kinds: Sequence[StoreKind] = STORES) -> Iterator[Stores]:
    """Start the stores in `kinds` on the network's store bridge; stop them on the way out.

    A store whose programs are missing is left out, and `Stores.unavailable` names them;
    a store that fails to start raises.
    """
    urls: dict[StoreKind, str] = {}
    unavailable: dict[StoreKind, str] = {}
    with contextlib.ExitStack() as stack:
        if "redis-cluster" in kinds:
            binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
            if binary is None or cli is None:
                unavailable["redis-cluster"] = "redis-server and redis-cli"
            else:
                cluster = BridgeRedisCluster(
                    binary, cli, network.directory("redis"), address=network.store_address
                )
                stack.callback(cluster.stop)
                cluster.start()
                urls["redis-cluster"] = cluster.url
        if "postgres" in kinds:
            bindir = postgres_bindir()
            if bindir is None or shutil.which("psql") is None:
                unavailable["postgres"] = "PostgreSQL (postgres and psql)"
            else:
                postgres = BridgePostgres(
                    bindir,
                    network.directory("postgres"),
                    address=network.store_address,
                    subnet=network.store_subnet,
                    settings=dict(POSTGRES_SETTINGS),
                )
                stack.callback(lambda: stop(postgres.process, signal.SIGINT))
                postgres.init()
                postgres.start()
                urls["postgres"] = postgres.url
        yield Stores(urls, unavailable)


def host_subject(server: ServerKind, store: StoreKind, url: str) -> Subject:
    """The app every host serves, on `server`, with its sessions in `store` at `url`."""
    wsgi = server == "gunicorn-sync"
    return Subject(
        name=f"{'wsgi' if wsgi else 'asgi'}-{store}",
        description=(
            f"sessionguard {'WSGI + Flask' if wsgi else 'ASGI + Starlette'} on {server}, "
            f"{'RedisStore(cluster=True)' if store == 'redis-cluster' else 'SQLStore(PostgreSQL)'}"
        ),
        server=server,
        app="benchmarks.cluster.app:" + ("create_wsgi_app" if wsgi else "create_app"),
        env={STORE_ENV: store, URL_ENV: url},
        settings={"store": store, "merge": True},
        session_id=session_id,
        family="sessionguard",
        storage="redis" if store == "redis-cluster" else "postgres",
    )


class HostServer(Server):
    """A `Server` inside `host`'s namespace, listening on the host's front address."""

    def __init__(
        self,
        host: Host,
        subject: Subject,
        *,
        workers: int,
        store_dir: Path,
        log_path: Path,
        ready_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            subject,
            workers=workers,
            store_dir=store_dir,
            log_path=log_path,
            ready_timeout=ready_timeout,
        )
        self.host = host
        self.base_url = f"http://{host.front_address}:{self.port}"

    def command(self) -> list[str]:
        # The harness's command line, bound to the host's address instead of loopback.
        bind = {
            f"127.0.0.1:{self.port}": f"{self.host.front_address}:{self.port}",
            "127.0.0.1": self.host.front_address,
        }
        return self.host.command([bind.get(arg, arg) for arg in super().command()])


@contextlib.contextmanager
def serving(
    hosts: Sequence[Host],
    servers: Sequence[ServerKind],
    store: StoreKind,
    url: str,
    directory: Path,
    *,
    workers: Mapping[ServerKind, int] = WORKERS,
    ready_timeout: float = 30.0,
) -> Iterator[list[HostServer]]:
    """Start `servers[i]` on `hosts[i]`, all at once; yield them once every one answers
    `GET /health`, and stop them all on the way out (also when one failed to start)."""
    started: list[HostServer] = []
    for host, kind in zip(hosts, servers, strict=True):
        store_dir = directory / f"host-{host.index}-store"
        store_dir.mkdir(exist_ok=True)
        started.append(
            HostServer(
                host,
                host_subject(kind, store, url),
                workers=workers[kind],
                store_dir=store_dir,
                log_path=directory / f"host-{host.index}-{kind}-{store}.log",
                ready_timeout=ready_timeout,
            )
        )
    with contextlib.ExitStack() as stack:
        for server in started:
            stack.callback(server.stop)
        with ThreadPoolExecutor(max_workers=len(started)) as pool:
            for future in [pool.submit(server.start) for server in started]:
                future.result()
        yield started
