"""Many sessions: every client has a session of its own; 90% reads, 10% writes.

The everyday load: many users, each clicking through pages that mostly read the
session and sometimes change it. Each client process opens its own session
(`POST /set/seed`, not timed), then sends `requests` sequential requests: nine in ten
are `GET /keys` (a read of the session), one in ten `POST /set/m<i>` (a write). Like a
browser, a client keeps whatever cookie the server last set, so a cookie session
carries its data along and a re-issued id is followed. At the end (not timed) each
client reads its session once more: an acknowledged write missing then is a lost update.

No two requests share a session here, so no store should lose anything; what differs
is the cost of a request, and which stores write on every read (the Django project,
on Django's engines and on sessionguard's, with SESSION_SAVE_EVERY_REQUEST=True, as
configured here; Flask-Session refreshes each request by default).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..harness import ClientPool, LatencyStats, RunParams, Server, Subject, latency_stats, remaining
from ..section import Section, Target
from ._http import Connection
from .base import (
    Scenario,
    ScenarioError,
    SubjectRun,
    counterpart_table,
    exceptions_cell,
    failures,
    median_of,
    merged_counts,
    rate_text,
    server_section,
    sessionguard_bars,
    summed,
)

__all__ = ["SCENARIO", "ManyResult", "many_client"]

#: One request in `WRITE_EVERY` is a write.
WRITE_EVERY = 10
#: As in the burst: stop sending this long (at most a quarter of the time left) before
#: the hard deadline.
FINISH_RESERVE = 5.0
PANEL = "many sessions (90% reads): req/s (higher is better)"


@dataclass(frozen=True)
class ManyJob:
    base_url: str
    cookie_name: str
    client: int
    requests: int
    deadline: float
    #: The cookie is the session's data (Starlette's cookie session): its value changes
    #: on every write, so it says nothing about ids and is not collected.
    cookie_carries_data: bool


@dataclass(frozen=True)
class ManyClientResult:
    started: float
    finished: float
    read_latencies: list[float]
    write_latencies: list[float]
    statuses: dict[str, int]
    #: Each cookie value the client was given after the first, in order (empty: cleared).
    cookie_changes: list[str]
    first_cookie: str
    keys_acknowledged: int
    lost_updates: int
    unsent: int
    cpu_seconds: float


@dataclass(frozen=True)
class ManyResult:
    sessions: int
    requests_sent: int
    responses: int
    reads: int
    writes: int
    unsent: int
    duration_s: float
    requests_per_s: float
    latency: LatencyStats
    read_latency: LatencyStats
    write_latency: LatencyStats
    statuses: dict[str, int]
    non_2xx: dict[str, int]
    #: Set-Cookie headers that named another session id than the client's (a clearing
    #: cookie included); `None` for cookie sessions, which have no id.
    reissued_ids: int | None
    #: Acknowledged writes (the seed included) missing from the client's final read.
    keys_acknowledged: int
    lost_updates: int
    client_cpu_s: float
    server_cpu_s: float | None

    @property
    def partial(self) -> str | None:
        if not self.unsent:
            return None
        return f"time limit reached: {self.unsent} requests were not sent"


def many_client(job: ManyJob, ready: Callable[[], None]) -> ManyClientResult:
    """One client process: its own session, 9 reads for every write, then a final read."""
    connection = Connection(job.base_url, job.cookie_name, max(remaining(job.deadline), 1.0))
    try:
        seed = connection.request("POST", "/set/seed", None)
        if not seed.status.startswith("2") or not seed.cookies or not seed.cookies[-1]:
            raise ScenarioError(
                f"POST /set/seed answered {seed.status} without a {job.cookie_name!r} cookie"
            )
        first_cookie = seed.cookies[-1]
        cookie: str | None = first_cookie
        changes: list[str] = []
        acknowledged = {"seed"}
        statuses: Counter[str] = Counter()
        reads: list[float] = []
        writes: list[float] = []
        ready()
        cpu_start, started = time.process_time(), time.perf_counter()
        sent = 0
        for i in range(job.requests):
            if time.monotonic() >= job.deadline:
                break
            sent += 1
            # Writes are spread: client k writes at i = k, k + 10, ... (mod 10).
            write = i % WRITE_EVERY == job.client % WRITE_EVERY
            key = f"m{i}"
            answer = connection.request(
                *(("POST", f"/set/{key}") if write else ("GET", "/keys")), cookie
            )
            statuses[answer.status] += 1
            if answer.status.startswith("error:"):
                continue
            (writes if write else reads).append(answer.latency)
            if write and answer.status.startswith("2"):
                acknowledged.add(key)
            for value in answer.cookies:
                if value != cookie:
                    if not job.cookie_carries_data:
                        changes.append(value)
                    cookie = value or None
        finished, cpu_end = time.perf_counter(), time.process_time()
        final = connection.request("GET", "/keys", cookie)
    finally:
        connection.close()
    if final.status != "200":
        raise ScenarioError(f"final GET /keys answered {final.status}: {final.body[:200]!r}")
    try:
        present = set(json.loads(final.body))
    except ValueError as exc:
        raise ScenarioError(f"final GET /keys is not a JSON list: {final.body[:200]!r}") from exc
    return ManyClientResult(
        started=started,
        finished=finished,
        read_latencies=reads,
        write_latencies=writes,
        statuses=dict(statuses),
        cookie_changes=changes,
        first_cookie=first_cookie,
        keys_acknowledged=len(acknowledged),
        lost_updates=len(acknowledged - present),
        unsent=job.requests - sent,
        cpu_seconds=cpu_end - cpu_start,
    )


def run(
    server: Server, subject: Subject, params: RunParams, deadline: float, pool: ClientPool
) -> ManyResult:
    stop_sending = deadline - min(FINISH_RESERVE, remaining(deadline) / 4)
    jobs = [
        ManyJob(
            server.base_url,
            subject.cookie_name,
            index,
            params.requests,
            stop_sending,
            cookie_carries_data=subject.session_id is None,
        )
        for index in range(params.clients)
    ]
    cpu_before = server.cpu_seconds()
    clients = pool.run(many_client, jobs, deadline=deadline)
    cpu_after = server.cpu_seconds()

    statuses: Counter[str] = Counter()
    for result in clients:
        statuses.update(result.statuses)
    reads = [latency for result in clients for latency in result.read_latencies]
    writes = [latency for result in clients for latency in result.write_latencies]
    duration = max(r.finished for r in clients) - min(r.started for r in clients)
    reissued = None
    if subject.session_id is not None:
        id_of = subject.session_id
        reissued = 0
        for result in clients:
            current = id_of(result.first_cookie)
            for value in result.cookie_changes:
                if not value or id_of(value) != current:
                    reissued += 1
                current = id_of(value) if value else ""
    return ManyResult(
        sessions=len(clients),
        requests_sent=sum(statuses.values()),
        responses=len(reads) + len(writes),
        reads=len(reads),
        writes=len(writes),
        unsent=sum(result.unsent for result in clients),
        duration_s=duration,
        requests_per_s=(len(reads) + len(writes)) / duration if duration > 0 else math.nan,
        latency=latency_stats(reads + writes),
        read_latency=latency_stats(reads),
        write_latency=latency_stats(writes),
        statuses=dict(sorted(statuses.items())),
        non_2xx={s: n for s, n in sorted(statuses.items()) if not s.startswith("2")},
        reissued_ids=reissued,
        keys_acknowledged=sum(result.keys_acknowledged for result in clients),
        lost_updates=sum(result.lost_updates for result in clients),
        client_cpu_s=sum(result.cpu_seconds for result in clients),
        server_cpu_s=(
            cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        ),
    )


def combine(results: Sequence[ManyResult]) -> ManyResult:
    """Several rounds as one: the median round's speed, every round's failures summed."""
    return replace(
        median_of(results),
        unsent=sum(r.unsent for r in results),
        statuses=merged_counts([r.statuses for r in results]),
        non_2xx=merged_counts([r.non_2xx for r in results]),
        reissued_ids=summed([r.reissued_ids for r in results]),
        keys_acknowledged=sum(r.keys_acknowledged for r in results),
        lost_updates=sum(r.lost_updates for r in results),
    )


def _targets(runs: Sequence[SubjectRun[ManyResult]]) -> list[Target]:
    baselines = {run_.subject.baseline for run_ in runs if run_.subject.baseline}
    ours = [r for r in runs if r.subject.is_sessionguard and r.subject.name not in baselines]
    if not ours:
        return []
    misses = []
    for run_ in ours:
        result = run_.result
        if result is None:
            misses.append(f"{run_.subject.name} not measured ({run_.status})")
        elif result.lost_updates or result.reissued_ids:
            misses.append(
                f"{run_.subject.name}: {result.lost_updates} lost, {result.reissued_ids} re-issued"
            )
    measured = (
        "; ".join(misses) if misses else f"0 lost and 0 re-issued in each of {len(ours)} subjects"
    )
    return [
        Target(
            "every sessionguard subject: zero lost updates and zero re-issued ids "
            "across many sessions",
            measured,
            not misses,
        )
    ]


def _table(runs: Sequence[SubjectRun[ManyResult]], params: RunParams) -> str:
    lines = [
        f"{params.clients} clients, each on a session of its own, x {params.requests} "
        f"requests: {WRITE_EVERY - 1} reads (`GET /keys`) for every write (`POST /set/<key>`).",
        "",
        "| subject | server | store | req/s | p50 ms | p99 ms | read p50 | write p50 "
        "| non-2xx | re-issued ids | lost updates | exceptions |",
        "|---|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|",
    ]
    for run_ in runs:
        subject = run_.subject
        head = f"| {subject.name} | {subject.server} x{run_.workers} | {subject.storage} | "
        result = run_.result
        if result is None:
            cells = [run_.status, "", "", "", "", "", "", "", exceptions_cell(run_)]
            lines.append(head + " | ".join(cells) + " |")
            continue
        non_2xx = ", ".join(f"{n}x {s}" for s, n in result.non_2xx.items()) or "0"
        if result.unsent:
            non_2xx += f" ({result.unsent} unsent)"
        cells = [
            rate_text(run_),
            f"{result.latency.p50_ms:.1f}",
            f"{result.latency.p99_ms:.1f}",
            f"{result.read_latency.p50_ms:.1f}",
            f"{result.write_latency.p50_ms:.1f}",
            non_2xx,
            "n/a" if result.reissued_ids is None else str(result.reissued_ids),
            f"{result.lost_updates} / {result.keys_acknowledged}",
            exceptions_cell(run_),
        ]
        lines.append(head + " | ".join(cells) + " |")
    lines += counterpart_table(runs)
    lines += [
        "",
        "- *lost updates*: acknowledged writes (each session's seed included) missing from "
        "the client's final read of its own session.",
        "- *re-issued ids*: Set-Cookie headers naming another session id than the one the "
        "client held; n/a for a cookie session, whose cookie is the data.",
        "- When both server scenarios run, this one follows the burst on the same server "
        "(with sessions of its own).",
    ]
    lines += failures(runs)
    return "\n".join(lines) + "\n"


def section(runs: Sequence[SubjectRun[ManyResult]], params: RunParams) -> Section:
    return server_section(
        SCENARIO,
        runs,
        params,
        markdown=_table(runs, params),
        targets=_targets(runs),
        bars=sessionguard_bars(PANEL, runs, lambda result: result.requests_per_s),
        write_every=WRITE_EVERY,
    )


SCENARIO: Scenario[ManyResult] = Scenario(
    name="many-sessions",
    title="Many sessions",
    client=(
        "the same client processes; each opens its own session, then sends its requests one "
        "after another over one http.client connection, keeping the last cookie it was given"
    ),
    run=run,
    combine=combine,
    section=section,
)
