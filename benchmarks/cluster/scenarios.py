"""The load across hosts: the same-session burst spread over them, and a host cut off.

* `burst_across`: the single-host same-session burst (`benchmarks.scenarios.
  same_session_burst`: its client, its job and its result), with client *i* sending to
  host *i mod n*. One session, opened on the first host; every host reads it back at the
  end, and the reads must agree.
* `partition`: the same kind of burst, for a fixed time, while one host's store link
  goes down for a few seconds and comes back (`HostNetwork.cut` / `restore`, from a
  thread of this process). Every request records when it started and ended, so each
  can be placed before, during or after the cut. Reported: what the cut host answered
  while cut off (a 503 is the right answer), what the other hosts answered meanwhile
  (2xx), how long the cut host took to answer 2xx again after the link returned, and
  whether any acknowledged write is missing from the session at the end.

Clients are `ClientPool` processes in the root namespace; they reach the hosts through
the front bridge. Every loop is bounded by a count and by a deadline.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from tests.hosts import HostNetwork

from ..harness import ClientPool, ServerKind, count_exceptions, latency_stats, remaining
from ..scenarios._http import REQUEST_TIMEOUT, Connection
from ..scenarios.base import ScenarioError
from ..scenarios.same_session_burst import (
    FINISH_RESERVE,
    BurstJob,
    BurstResult,
    ClientResult,
    burst_client,
    count_burst,
    cpu_used,
)
from ..subjects._sessionguard import session_id as id_of
from .app import StoreKind
from .fleet import HostServer

__all__ = [
    "PARTITION_SETUPS",
    "PartitionResult",
    "PartitionSetup",
    "SpreadBurst",
    "burst_across",
    "partition",
    "partition_client",
]

COOKIE_NAME = "session"
#: How long `partition` waits, at most, for the cut host to answer 2xx again.
RECOVERY_LIMIT = 30.0
#: An answer this long after the cut cannot have been produced before it: the request
#: needed the store after the cut (requests take at most a few hundred ms here).
ANSWER_GRACE = 1.0


# -- opening and reading the session --------------------------------------------------------


def open_session(base_url: str, timeout: float) -> str:
    """`POST /set/seed` without a cookie; the session cookie's value."""
    with httpx.Client(base_url=base_url, timeout=timeout, trust_env=False) as client:
        response = client.post("/set/seed")
    value = response.cookies.get(COOKIE_NAME)
    if response.status_code != 200 or not value:
        raise ScenarioError(f"POST /set/seed on {base_url} answered {response.status_code}")
    return value


def read_keys(servers: Sequence[HostServer], cookie: str, timeout: float) -> list[set[str]]:
    """Every host's `GET /keys` of the session, in host order."""
    reads = []
    for server in servers:
        with httpx.Client(base_url=server.base_url, timeout=timeout, trust_env=False) as client:
            response = client.get("/keys", headers={"cookie": f"{COOKIE_NAME}={cookie}"})
        if response.status_code != 200:
            raise ScenarioError(
                f"final GET /keys on host {server.host.index} answered "
                f"{response.status_code}: {response.text[:200]!r}"
            )
        reads.append(set(response.json()))
    return reads


def _server_cpu(servers: Sequence[HostServer]) -> float | None:
    seconds = [server.cpu_seconds() for server in servers]
    return None if any(s is None for s in seconds) else sum(s or 0.0 for s in seconds)


# -- the burst, spread over the hosts ---------------------------------------------------------


@dataclass(frozen=True)
class SpreadBurst:
    """`BurstResult` of a burst over `hosts` hosts, with each host's share."""

    hosts: int
    servers: list[str]  # the server kind on each host, in host order
    result: BurstResult
    statuses_by_host: dict[int, dict[str, int]]
    #: Every host read the same keys at the end.
    reads_agree: bool


def burst_across(
    servers: Sequence[HostServer],
    *,
    clients: int,
    requests: int,
    pool: ClientPool,
    deadline: float,
) -> SpreadBurst:
    """The same-session burst with client *i* on `servers[i % len(servers)]`."""
    timeout = min(REQUEST_TIMEOUT, max(remaining(deadline), 1.0))
    cookie = open_session(servers[0].base_url, timeout)
    stop_sending = deadline - min(FINISH_RESERVE, remaining(deadline) / 4)
    jobs = [
        BurstJob(
            servers[index % len(servers)].base_url,
            cookie,
            COOKIE_NAME,
            index,
            requests,
            stop_sending,
        )
        for index in range(clients)
    ]
    cpu_before = _server_cpu(servers)
    results = pool.run(burst_client, jobs, deadline=deadline)
    cpu_after = _server_cpu(servers)
    reads = read_keys(servers, cookie, timeout)
    by_host: dict[int, Counter[str]] = {server.host.index: Counter() for server in servers}
    for index, result in enumerate(results):
        by_host[servers[index % len(servers)].host.index].update(result.statuses)
    return SpreadBurst(
        hosts=len(servers),
        servers=[server.subject.server for server in servers],
        result=summarise(results, reads[0], id_of(cookie), cpu_used(cpu_before, cpu_after)),
        statuses_by_host={host: dict(sorted(c.items())) for host, c in by_host.items()},
        reads_agree=all(read == reads[0] for read in reads),
    )


def summarise(
    clients: Sequence[ClientResult], present: set[str], session_id: str, server_cpu: float | None
) -> BurstResult:
    """The burst's clients as one `BurstResult`, counted as the single-host burst counts."""
    return count_burst(
        clients,
        present=present,
        session_id=session_id,
        id_of=id_of,
        final_read_cookie="the session's cookie, on every host",
        server_cpu_s=server_cpu,
    )


# -- the partition ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionJob:
    base_url: str
    cookie: str
    client: int
    stop_at: float  # time.perf_counter(): send nothing after this
    max_requests: int
    deadline: float  # time.monotonic(): the run's hard limit


@dataclass(frozen=True)
class Attempt:
    key: str
    started: float  # time.perf_counter() (CLOCK_MONOTONIC, the same in every process)
    finished: float
    status: str  # "200", "503", or "error:<exception>" when there was no response
    cookies: tuple[str, ...]


def partition_client(job: PartitionJob, ready: Callable[[], None]) -> list[Attempt]:
    """One client: distinct-key writes on the session, one after another, until `stop_at`."""
    connection = Connection(job.base_url, COOKIE_NAME, max(remaining(job.deadline), 1.0))
    attempts: list[Attempt] = []
    ready()
    try:
        for i in range(job.max_requests):
            if time.perf_counter() >= job.stop_at or time.monotonic() >= job.deadline:
                break
            key = f"p{job.client}-{i}"
            answer = connection.request("POST", f"/set/{key}", job.cookie)
            started = answer.received - answer.latency
            attempts.append(Attempt(key, started, answer.received, answer.status, answer.cookies))
    finally:
        connection.close()
    return attempts


def _ready_only(job: None, ready: Callable[[], None]) -> None:
    ready()


class _Cutter(threading.Thread):
    """Takes the host's store link down at `cut_at` and up again at `restore_at`
    (`time.perf_counter()` values); restores it whatever happens, `abort()` included."""

    def __init__(
        self, network: HostNetwork, server: HostServer, cut_at: float, restore_at: float
    ) -> None:
        super().__init__(name="link-cutter", daemon=True)
        self.network, self.host = network, server.host
        self.cut_at, self.restore_at = cut_at, restore_at
        self.cut: float | None = None  # when the link was down (the command returned)
        self.restored: float | None = None  # when the command to bring it up was given
        self.error: BaseException | None = None
        self._abort = threading.Event()

    def run(self) -> None:
        try:
            if not self._abort.wait(max(0.0, self.cut_at - time.perf_counter())):
                self.network.cut(self.host)
                self.cut = time.perf_counter()
                self._abort.wait(max(0.0, self.restore_at - time.perf_counter()))
        except BaseException as exc:  # reported by partition(); the link is restored below
            self.error = exc
        finally:
            self.restored = time.perf_counter()
            try:
                self.network.restore(self.host)
            except BaseException as exc:
                self.error = self.error or exc

    def abort(self) -> None:
        self._abort.set()


@dataclass(frozen=True)
class PartitionSetup:
    """Which server each host runs, which host is cut off, and for how long.

    Both adapters serve each store, and each is the cut-off host once. A cut-off host
    on Redis Cluster takes about 6 s to give up on a request (redis-py tries each of
    the 6 nodes with the store's 1 s connect timeout), so its link stays down longer.
    """

    servers: tuple[ServerKind, ServerKind, ServerKind]
    cut: int  # index into servers
    cut_for: float


#: The partition scenario's setup on each store (the test's and the benchmark's).
PARTITION_SETUPS: Mapping[StoreKind, PartitionSetup] = {
    "redis-cluster": PartitionSetup(
        ("gunicorn-sync", "uvicorn", "gunicorn-sync"), cut=1, cut_for=10.0
    ),
    "postgres": PartitionSetup(("uvicorn", "gunicorn-sync", "uvicorn"), cut=1, cut_for=5.0),
}


@dataclass(frozen=True)
class PartitionResult:
    hosts: int
    servers: list[str]
    cut_host: int  # its index (1-based)
    cut_server: str
    cut_s: float  # how long the link was down
    #: Statuses of the cut host's answers: before the cut; while cut off (answered at
    #: least `ANSWER_GRACE` after the cut and before the link came back: the request must
    #: have needed the store after the cut); and to requests sent once it answered 2xx again.
    cut_host_before: dict[str, int]
    cut_host_while_cut: dict[str, int]
    cut_host_after: dict[str, int]
    #: Its answers around the edges (any answer is fair there).
    cut_host_edges: dict[str, int]
    #: Median latency (ms) of its answers while cut off, by status.
    cut_host_while_cut_ms: dict[str, float]
    #: The other hosts' answers: all of them, and to the requests sent while the link was
    #: down, with their p99 latency.
    others: dict[str, int]
    others_while_cut: dict[str, int]
    others_while_cut_p99_ms: float
    #: What the other hosts logged while this ran: writes refused because concurrent
    #: writers kept winning (`conflict`), and store errors (`store`, which a cut elsewhere
    #: must never cause); and server tracebacks.
    others_refusals: dict[str, int]
    others_tracebacks: int
    cut_host_tracebacks: int
    #: From the link's return to the cut host's first 2xx (None: not within the limit).
    recovery_s: float | None
    keys_acknowledged: int
    lost_updates: int
    unacknowledged_present: int
    reissued_ids: int
    reads_agree: bool


def partition(
    network: HostNetwork,
    servers: Sequence[HostServer],
    *,
    cut: int,
    clients: int,
    pool: ClientPool,
    deadline: float,
    before: float = 1.5,
    cut_for: float = 8.0,
    after: float = 3.0,
    max_requests: int = 5000,
) -> PartitionResult:
    """Burst on one session over all `servers` while `servers[cut]`'s store link is down
    from `before` seconds in, for `cut_for` seconds; keep sending for `after` more."""
    timeout = min(REQUEST_TIMEOUT, max(remaining(deadline), 1.0))
    cookie = open_session(servers[0].base_url, timeout)
    # Spawn the client processes first (if they are not yet), so the cut falls mid-burst.
    pool.run(_ready_only, [None] * clients, deadline=deadline)
    start = time.perf_counter()
    stop_at = start + before + cut_for + after
    if time.monotonic() + (stop_at - start) + FINISH_RESERVE > deadline:
        raise ScenarioError("the time limit is too short for the partition scenario")
    jobs = [
        PartitionJob(
            servers[index % len(servers)].base_url, cookie, index, stop_at, max_requests, deadline
        )
        for index in range(clients)
    ]
    target = servers[cut]
    marks = [len(server.log_text()) for server in servers]
    cutter = _Cutter(network, target, start + before, start + before + cut_for)
    cutter.start()
    try:
        results = pool.run(partition_client, jobs, deadline=deadline)
    finally:
        cutter.abort()
        cutter.join(timeout=30.0)
        network.restore(target.host)  # again: a no-op unless the thread failed
    if cutter.error is not None:
        raise ScenarioError(f"cutting the link failed: {cutter.error!r}")
    if cutter.cut is None or cutter.restored is None:
        raise ScenarioError("the link was never cut")
    cut_at, restored = cutter.cut, cutter.restored

    by_host: dict[int, list[Attempt]] = {server.host.index: [] for server in servers}
    for index, attempts in enumerate(results):
        by_host[servers[index % len(servers)].host.index].extend(attempts)
    mine = sorted(by_host[target.host.index], key=lambda a: a.started)
    recovered = next(
        (a.finished for a in mine if a.started >= restored and a.status.startswith("2")), None
    )
    if recovered is None:
        recovered = _poll_until_ok(target, cookie, timeout)
    groups: dict[str, list[Attempt]] = {"before": [], "while": [], "after": [], "edges": []}
    for a in mine:
        if a.finished < cut_at:
            groups["before"].append(a)
        elif cut_at + ANSWER_GRACE <= a.finished < restored:
            groups["while"].append(a)
        elif recovered is not None and a.started >= recovered:
            groups["after"].append(a)
        else:
            groups["edges"].append(a)
    others = [a for host, found in by_host.items() if host != target.host.index for a in found]
    others_while = [a for a in others if a.started >= cut_at and a.finished <= restored]
    logs = [server.log_text()[mark:] for server, mark in zip(servers, marks, strict=True)]
    other_logs = "".join(
        log for server, log in zip(servers, logs, strict=True) if server is not target
    )

    everything = [a for attempts in results for a in attempts]
    acknowledged = {a.key for a in everything if a.status.startswith("2")}
    refused = {a.key for a in everything} - acknowledged
    reads = read_keys(servers, cookie, timeout)
    session = id_of(cookie)
    return PartitionResult(
        hosts=len(servers),
        servers=[server.subject.server for server in servers],
        cut_host=target.host.index,
        cut_server=target.subject.server,
        cut_s=restored - cut_at,
        cut_host_before=_statuses(groups["before"]),
        cut_host_while_cut=_statuses(groups["while"]),
        cut_host_after=_statuses(groups["after"]),
        cut_host_edges=_statuses(groups["edges"]),
        cut_host_while_cut_ms=_latency_by_status(groups["while"]),
        others=_statuses(others),
        others_while_cut=_statuses(others_while),
        others_while_cut_p99_ms=latency_stats(
            [a.finished - a.started for a in others_while]
        ).p99_ms,
        others_refusals=refusals(other_logs),
        others_tracebacks=count_exceptions(other_logs)[0],
        cut_host_tracebacks=count_exceptions(logs[cut])[0],
        recovery_s=None if recovered is None else max(0.0, recovered - restored),
        keys_acknowledged=len(acknowledged),
        lost_updates=len(acknowledged - reads[0]),
        unacknowledged_present=len(refused & reads[0]),
        reissued_ids=sum(
            1 for a in everything for value in a.cookies if not value or id_of(value) != session
        ),
        reads_agree=all(read == reads[0] for read in reads),
    )


def refusals(log: str) -> dict[str, int]:
    """The refused saves and loads a server logged (sessionguard's ERROR lines), by cause:
    `conflict` (compare-and-swap attempts all lost to concurrent writers) or `store` (the
    store was unreachable or failed)."""
    found = {"conflict": 0, "store": 0}
    for line in log.splitlines():
        if "ERROR sessionguard" not in line:
            continue
        found["conflict" if "compare-and-swap" in line else "store"] += 1
    return found


def _statuses(attempts: Sequence[Attempt]) -> dict[str, int]:
    return dict(sorted(Counter(a.status for a in attempts).items()))


def _latency_by_status(attempts: Sequence[Attempt]) -> dict[str, float]:
    """The median latency (ms) of the attempts of each status."""
    found: dict[str, list[float]] = {}
    for a in attempts:
        found.setdefault(a.status, []).append(a.finished - a.started)
    return {status: latency_stats(values).p50_ms for status, values in sorted(found.items())}


def _poll_until_ok(server: HostServer, cookie: str, timeout: float) -> float | None:
    """When the cut host first answers `GET /keys` with 200 (`perf_counter`), or `None`."""
    limit = time.monotonic() + RECOVERY_LIMIT
    with httpx.Client(base_url=server.base_url, timeout=timeout, trust_env=False) as client:
        while time.monotonic() < limit:
            try:
                response = client.get("/keys", headers={"cookie": f"{COOKIE_NAME}={cookie}"})
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return time.perf_counter()
            time.sleep(0.1)
    return None


def counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n}x {status}" for status, n in counts.items()) or "none"
