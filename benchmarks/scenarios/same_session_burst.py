"""Same-session burst: many clients write distinct keys into one session at once.

One session is created (`POST /set/seed`). Then `clients` client processes each send
`requests` sequential `POST /set/c<client>-<i>` requests, all carrying that session's
cookie, and a final `GET /keys` reads what survived. This is the lost-update case: a
page firing parallel XHRs, or two tabs. A store without compare-and-swap and merge keeps
only the last writer's view of the session.

Reported per subject: throughput, latency, non-2xx answers, re-issued session ids,
lost updates and server exceptions. The section's targets: no lost updates and no
re-issued ids for sessionguard; merge=True at no less than 0.9x the throughput of the
same setup with merge=False; sessionguard's FileStore at least as fast as every
file-based peer on the same server.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import httpx

from ..harness import ClientPool, LatencyStats, RunParams, Server, Subject, latency_stats, remaining
from ..section import Section, Target
from ._http import REQUEST_TIMEOUT, Connection, open_session
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
    ratio_text,
    server_section,
    sessionguard_bars,
    summed,
)

__all__ = ["SCENARIO", "BurstResult", "burst_client", "count_burst", "cpu_used"]

#: The issue's target: merge=True keeps at least this share of merge=False's throughput.
TARGET_RATIO = 0.9
#: Clients stop sending this long (at most a quarter of the time left) before the run's
#: hard deadline, leaving time to collect their numbers and read the session back.
FINISH_RESERVE = 5.0
PANEL = "same-session burst: req/s (higher is better)"
LOST_PANEL = "same-session burst: lost updates, % (lower is better)"
COOKIE_NOTE = (
    "a cookie session (`starlette-cookie`) cannot merge concurrent writes: each response "
    "carries the whole session as its request saw it, so the most recent Set-Cookie (the "
    "one the final read uses) holds the seed and at most the last writer's key; it has no "
    "session id to re-issue (n/a)"
)


@dataclass(frozen=True)
class BurstJob:
    base_url: str
    cookie: str  # the session cookie's value, carried by every request
    cookie_name: str
    client: int
    requests: int
    deadline: float


@dataclass(frozen=True)
class ClientResult:
    started: float  # time.perf_counter() (CLOCK_MONOTONIC, shared by all processes)
    finished: float
    latencies: list[float]
    statuses: dict[str, int]  # "200", "503", or "error:ReadTimeout" for transport errors
    acknowledged: list[str]  # keys whose write was answered 2xx
    unacknowledged: list[str]  # keys answered otherwise, or not at all
    cookies: dict[str, int]  # values of the session cookie in Set-Cookie, and how often
    #: The last Set-Cookie value this client received, and when (perf_counter).
    last_cookie: tuple[float, str] | None
    unsent: int  # requests not sent because the job's deadline passed
    cpu_seconds: float


@dataclass(frozen=True)
class BurstResult:
    session_id: str
    requests_sent: int
    responses: int
    unsent: int
    duration_s: float
    requests_per_s: float
    latency: LatencyStats
    statuses: dict[str, int]
    non_2xx: dict[str, int]
    #: Set-Cookie headers naming another id than the session's (a clearing cookie
    #: included); `None` when the subject's cookie carries no id.
    reissued_ids: int | None
    keys_attempted: int
    keys_acknowledged: int
    keys_present: int
    #: Acknowledged (2xx) writes whose key is missing at the end.
    lost_updates: int
    #: Writes answered non-2xx (or not at all) whose key is present anyway.
    unacknowledged_present: int
    #: Which cookie the final read carried: the session's own, or (cookie sessions) the
    #: most recent one any client received.
    final_read_cookie: str
    #: CPU seconds used during the burst; client CPU over duration is the cores the
    #: load generator took from the server.
    client_cpu_s: float
    server_cpu_s: float | None

    @property
    def partial(self) -> str | None:
        if not self.unsent:
            return None
        return f"time limit reached: {self.unsent} requests were not sent"


def burst_client(job: BurstJob, ready: Callable[[], None]) -> ClientResult:
    """One client process: `job.requests` sequential writes of distinct keys, same cookie."""
    keys = [f"c{job.client}-{i}" for i in range(job.requests)]
    connection = Connection(job.base_url, job.cookie_name, max(remaining(job.deadline), 1.0))
    statuses: Counter[str] = Counter()
    cookies: Counter[str] = Counter()
    latencies: list[float] = []
    acknowledged: list[str] = []
    unacknowledged: list[str] = []
    last_cookie: tuple[float, str] | None = None
    ready()
    cpu_start, started = time.process_time(), time.perf_counter()
    sent = 0
    try:
        for key in keys:
            if time.monotonic() >= job.deadline:
                break
            sent += 1
            answer = connection.request("POST", f"/set/{key}", job.cookie)
            statuses[answer.status] += 1
            if answer.status.startswith("error:"):
                unacknowledged.append(key)
                continue
            latencies.append(answer.latency)
            (acknowledged if answer.status.startswith("2") else unacknowledged).append(key)
            cookies.update(answer.cookies)
            if answer.cookies:
                last_cookie = (answer.received, answer.cookies[-1])
    finally:
        connection.close()
    finished, cpu_end = time.perf_counter(), time.process_time()
    return ClientResult(
        started=started,
        finished=finished,
        latencies=latencies,
        statuses=dict(statuses),
        acknowledged=acknowledged,
        unacknowledged=unacknowledged,
        cookies=dict(cookies),
        last_cookie=last_cookie,
        unsent=job.requests - sent,
        cpu_seconds=cpu_end - cpu_start,
    )


def run(
    server: Server, subject: Subject, params: RunParams, deadline: float, pool: ClientPool
) -> BurstResult:
    """Create the session, burst, then read back the keys."""
    base_url = server.base_url
    timeout = min(REQUEST_TIMEOUT, max(remaining(deadline), 1.0))
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        cookie_value = open_session(client, subject)
    session_id = subject.session_id(cookie_value) if subject.session_id else cookie_value
    stop_sending = deadline - min(FINISH_RESERVE, remaining(deadline) / 4)
    jobs = [
        BurstJob(base_url, cookie_value, subject.cookie_name, index, params.requests, stop_sending)
        for index in range(params.clients)
    ]
    cpu_before = server.cpu_seconds()
    clients = pool.run(burst_client, jobs, deadline=deadline)
    cpu_after = server.cpu_seconds()

    final_cookie, final_read = cookie_value, "the session's cookie"
    if subject.session_id is None:
        # The cookie is the session: read what the most recent response handed out.
        received = [result.last_cookie for result in clients if result.last_cookie]
        if received:
            final_cookie = max(received)[1]
            final_read = "the most recent Set-Cookie"
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        response = client.get("/keys", headers={"cookie": f"{subject.cookie_name}={final_cookie}"})
    if response.status_code != 200:
        raise ScenarioError(f"final GET /keys answered {response.status_code}: {response.text!r}")
    try:
        present = set(response.json())
    except ValueError as exc:
        raise ScenarioError(f"final GET /keys is not a JSON list: {response.text[:200]!r}") from exc
    return count_burst(
        clients,
        present=present,
        session_id=session_id,
        id_of=subject.session_id,
        final_read_cookie=final_read,
        server_cpu_s=cpu_used(cpu_before, cpu_after),
    )


def cpu_used(before: float | None, after: float | None) -> float | None:
    """CPU seconds between two readings, or `None` when either is missing."""
    return after - before if before is not None and after is not None else None


def count_burst(
    clients: Sequence[ClientResult],
    *,
    present: set[str],
    session_id: str,
    id_of: Callable[[str], str] | None,
    final_read_cookie: str,
    server_cpu_s: float | None,
) -> BurstResult:
    """The clients' results as one `BurstResult` (also the burst spread over several hosts).

    `present`: the keys the final read found; `id_of`: the subject's `session_id`, `None`
    when its cookie carries no id (then re-issued ids cannot be counted).
    """
    statuses: Counter[str] = Counter()
    cookies: Counter[str] = Counter()
    for result in clients:
        statuses.update(result.statuses)
        cookies.update(result.cookies)
    acknowledged = {key for result in clients for key in result.acknowledged}
    unacknowledged = {key for result in clients for key in result.unacknowledged}
    latencies = [latency for result in clients for latency in result.latencies]
    duration = max(r.finished for r in clients) - min(r.started for r in clients)
    reissued = None
    if id_of is not None:
        reissued = sum(n for value, n in cookies.items() if not value or id_of(value) != session_id)
    return BurstResult(
        session_id=session_id,
        requests_sent=sum(statuses.values()),
        responses=len(latencies),
        unsent=sum(result.unsent for result in clients),
        duration_s=duration,
        requests_per_s=len(latencies) / duration if duration > 0 else math.nan,
        latency=latency_stats(latencies),
        statuses=dict(sorted(statuses.items())),
        non_2xx={s: n for s, n in sorted(statuses.items()) if not s.startswith("2")},
        reissued_ids=reissued,
        keys_attempted=len(acknowledged) + len(unacknowledged),
        keys_acknowledged=len(acknowledged),
        keys_present=len(present & (acknowledged | unacknowledged)),
        lost_updates=len(acknowledged - present),
        unacknowledged_present=len(unacknowledged & present),
        final_read_cookie=final_read_cookie,
        client_cpu_s=sum(result.cpu_seconds for result in clients),
        server_cpu_s=server_cpu_s,
    )


def combine(results: Sequence[BurstResult]) -> BurstResult:
    """Several rounds as one: the median round's speed, every round's failures summed."""
    median = median_of(results)
    return replace(
        median,
        unsent=sum(r.unsent for r in results),
        statuses=merged_counts([r.statuses for r in results]),
        non_2xx=merged_counts([r.non_2xx for r in results]),
        reissued_ids=summed([r.reissued_ids for r in results]),
        keys_attempted=sum(r.keys_attempted for r in results),
        keys_acknowledged=sum(r.keys_acknowledged for r in results),
        keys_present=sum(r.keys_present for r in results),
        lost_updates=sum(r.lost_updates for r in results),
        unacknowledged_present=sum(r.unacknowledged_present for r in results),
    )


# -- the section: table, targets, bars ----------------------------------------------------


def _measured(runs: Sequence[SubjectRun[BurstResult]]) -> dict[str, SubjectRun[BurstResult]]:
    return {run_.subject.name: run_ for run_ in runs if run_.result is not None}


def _baselines(runs: Sequence[SubjectRun[BurstResult]]) -> set[str]:
    return {run_.subject.baseline for run_ in runs if run_.subject.baseline}


def _rate_ratio(a: BurstResult, b: BurstResult) -> float:
    return a.requests_per_s / b.requests_per_s if b.requests_per_s > 0 else math.nan


def _targets(runs: Sequence[SubjectRun[BurstResult]]) -> list[Target]:
    measured = _measured(runs)
    baselines = _baselines(runs)
    targets: list[Target] = []
    # 1. sessionguard never loses an acknowledged write nor hands out another session.
    for run_ in runs:
        subject = run_.subject
        if not subject.is_sessionguard or subject.name in baselines:
            continue
        description = f"{subject.name}: zero lost updates and zero re-issued session ids"
        result = run_.result
        if result is None:
            targets.append(Target(description, f"not measured ({run_.status})", False))
            continue
        refused = sum(result.non_2xx.values())
        measured_text = (
            f"{result.lost_updates} lost of {result.keys_acknowledged} acknowledged, "
            f"{result.reissued_ids} re-issued"
            + (f", {refused} writes refused (non-2xx, not lost)" if refused else "")
        )
        met = result.lost_updates == 0 and not result.reissued_ids
        targets.append(Target(description, measured_text, met))
    # 2. Merging costs little: merge=True at >= 0.9x the req/s of merge=False.
    for run_ in runs:
        subject = run_.subject
        if subject.baseline is None or subject.name not in measured:
            continue
        description = (
            f"{subject.name}: burst req/s >= {TARGET_RATIO}x of {subject.baseline} "
            "(merge=False, last writer wins), with no lost or refused write"
        )
        if subject.baseline not in {r.subject.name for r in runs}:
            continue  # the baseline was not selected: nothing to compare with
        baseline = measured.get(subject.baseline)
        if baseline is None or baseline.result is None:
            targets.append(Target(description, "baseline not measured (its run failed)", False))
            continue
        result, base = measured[subject.name].result, baseline.result
        assert result is not None
        ratio = _rate_ratio(result, base)
        refused = sum(result.non_2xx.values())
        text = (
            f"{ratio_text(ratio)} ({result.requests_per_s:.0f} vs {base.requests_per_s:.0f} "
            f"req/s; {result.lost_updates} lost, {refused} refused; the baseline lost "
            f"{base.lost_updates})"
        )
        met = math.isfinite(ratio) and ratio >= TARGET_RATIO and not result.lost_updates
        targets.append(Target(description, text, met and not refused))
    # 3. FileStore is at least as fast as every file-based peer on the same server.
    for peer, ours, durable in _file_pairs(runs):
        assert peer.result is not None and ours.result is not None
        ratio = _rate_ratio(ours.result, peer.result)
        text = (
            f"{ratio_text(ratio)} ({ours.result.requests_per_s:.0f} vs "
            f"{peer.result.requests_per_s:.0f} req/s; the peer lost "
            f"{peer.result.lost_updates} of {peer.result.keys_acknowledged})"
        )
        if durable is not None and durable.result is not None:
            text += (
                f"; {durable.subject.name} (fsync): "
                f"{ratio_text(_rate_ratio(durable.result, peer.result))}"
            )
        description = f"{ours.subject.name}: burst req/s >= {peer.subject.name}'s"
        targets.append(Target(description, text, math.isfinite(ratio) and ratio >= 1.0))
    return targets


def _file_pairs(
    runs: Sequence[SubjectRun[BurstResult]],
) -> list[tuple[SubjectRun[BurstResult], SubjectRun[BurstResult], SubjectRun[BurstResult] | None]]:
    """(file-based peer, sessionguard FileStore on its server without fsync, and with fsync).

    The Django engine (a subject with `counterparts`) is left out: it is compared with
    Django's own engines in a table of its own, and must not stand in for `sg-wsgi-file`.
    """
    measured = _measured(runs)
    baselines = _baselines(runs)
    ours = [
        run_
        for run_ in measured.values()
        if run_.subject.is_sessionguard
        and run_.subject.storage == "file"
        and run_.subject.name not in baselines
        and not run_.subject.counterparts
    ]
    pairs = []
    for peer in measured.values():
        if peer.subject.is_sessionguard or peer.subject.storage != "file":
            continue
        same_server = [r for r in ours if r.subject.server == peer.subject.server]
        plain = [r for r in same_server if not r.subject.settings.get("durable")]
        durable = [r for r in same_server if r.subject.settings.get("durable")]
        if plain:
            pairs.append((peer, plain[0], durable[0] if durable else None))
    return pairs


def _table(runs: Sequence[SubjectRun[BurstResult]], params: RunParams) -> str:
    measured = _measured(runs)
    lines = [
        f"{params.clients} clients x {params.requests} requests, all on one session, each "
        f"setting a distinct key; then one read of the session. Clients: {SCENARIO.client}.",
        "",
        "| subject | server | store | req/s | p50 ms | p99 ms | non-2xx | re-issued ids "
        "| lost updates | exceptions | vs merge=False |",
        "|---|---|---|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for run_ in runs:
        subject = run_.subject
        server = f"{subject.server} x{run_.workers}"
        head = f"| {subject.name} | {server} | {subject.storage} | "
        result = run_.result
        if result is None:
            cells = [run_.status, "", "", "", "", "", exceptions_cell(run_), ""]
            lines.append(head + " | ".join(cells) + " |")
            continue
        non_2xx = ", ".join(f"{n}x {s}" for s, n in result.non_2xx.items()) or "0"
        if result.unsent:
            non_2xx += f" ({result.unsent} unsent)"
        vs = "-"
        if subject.baseline is not None:
            base = measured.get(subject.baseline)
            vs = (
                ratio_text(_rate_ratio(result, base.result))
                if base is not None and base.result is not None
                else "n/a (baseline not run)"
            )
        cells = [
            rate_text(run_),
            f"{result.latency.p50_ms:.1f}",
            f"{result.latency.p99_ms:.1f}",
            non_2xx,
            "n/a" if result.reissued_ids is None else str(result.reissued_ids),
            f"{result.lost_updates} / {result.keys_acknowledged}",
            exceptions_cell(run_),
            vs,
        ]
        lines.append(head + " | ".join(cells) + " |")
    pairs = _file_pairs(runs)
    if pairs:
        lines += [
            "",
            "sessionguard's FileStore against each file-based peer on the same server "
            "(ratio of burst req/s; above 1.00x sessionguard is faster):",
            "",
            "| peer | peer req/s | peer lost updates | FileStore | ratio | with fsync | ratio |",
            "|---|--:|--:|---|--:|---|--:|",
        ]
        for peer, ours, durable in pairs:
            assert peer.result is not None and ours.result is not None
            durable_cells = ["-", "-"]
            if durable is not None and durable.result is not None:
                durable_cells = [
                    durable.subject.name,
                    ratio_text(_rate_ratio(durable.result, peer.result)),
                ]
            lines.append(
                f"| {peer.subject.name} | {peer.result.requests_per_s:.0f} "
                f"| {peer.result.lost_updates} / {peer.result.keys_acknowledged} "
                f"| {ours.subject.name} | {ratio_text(_rate_ratio(ours.result, peer.result))} "
                f"| {' | '.join(durable_cells)} |"
            )
    lines += counterpart_table(runs)
    lines += [
        "",
        "- *req/s*: responses over the burst's wall time (first request sent to last "
        "response read, all clients); with `--rounds`, the median round and the range.",
        "- *lost updates*: acknowledged (2xx) writes whose key is missing from the final "
        "`GET /keys`, out of all acknowledged writes. A refused (non-2xx) write is not "
        "counted as lost: the client was told.",
        "- *re-issued ids*: Set-Cookie headers naming a different session id than the one "
        "every request carried (a clearing cookie counts): the user was logged out.",
        "- *exceptions*: tracebacks in the server's captured stdout/stderr during this "
        "scenario; in brackets, lines logged at ERROR without one (such as a save given "
        "up with a 503).",
        f"- *vs merge=False*: req/s over that of the same setup with merge=False (last "
        f"writer wins), measured in this run; the target is {TARGET_RATIO}x.",
    ]
    if any(run_.subject.session_id is None for run_ in runs):
        lines.append(f"- {COOKIE_NOTE[0].upper()}{COOKIE_NOTE[1:]}.")
    lines += failures(runs)
    return "\n".join(lines) + "\n"


def section(runs: Sequence[SubjectRun[BurstResult]], params: RunParams) -> Section:
    bars = sessionguard_bars(PANEL, runs, lambda result: result.requests_per_s)
    bars += sessionguard_bars(
        LOST_PANEL,
        runs,
        lambda result: (
            100 * result.lost_updates / result.keys_acknowledged
            if result.keys_acknowledged
            else None
        ),
    )
    return server_section(
        SCENARIO, runs, params, markdown=_table(runs, params), targets=_targets(runs), bars=bars
    )


SCENARIO: Scenario[BurstResult] = Scenario(
    name="same-session-burst",
    title="Same-session burst",
    client=(
        "one process per client (spawned once, reused for every subject), each sending its "
        "requests one after another over one http.client connection (kept alive where the "
        "server allows it)"
    ),
    run=run,
    combine=combine,
    section=section,
)
