"""`python -m benchmarks.cluster` (`make bench-cluster`): several app hosts on one store.

    python -m benchmarks.cluster                      # 6 clients x 100 requests
    python -m benchmarks.cluster --quick              # 6 clients x 30, shorter cuts
    python -m benchmarks.cluster --stores postgres --servers uvicorn --rounds 3

Three hosts, each a network namespace of its own (`tests.hosts.HostNetwork`; needs root
and iproute2), serve the same sessions from a shared store: a Redis Cluster (3 masters,
3 replicas) and a PostgreSQL, both started here on a bridge in the root namespace.

* **Scaling.** For each store and each server (gunicorn sync workers, uvicorn), all
  three hosts run that server, and the same-session burst of `benchmarks.scenarios.
  same_session_burst` is spread over 1, 2 and then 3 of them (client *i* on host
  *i mod n*; the hosts not in a run sit idle): req/s, p50/p99, refused writes, re-issued
  ids, lost updates, and the CPU the app servers and the whole machine used.
* **Partition.** For each store, the hosts run a mix of gunicorn and uvicorn, the burst
  runs for a fixed time, and one host's store link goes down and comes back
  (`benchmarks.cluster.scenarios.partition`).

The Markdown report goes to stdout; `cluster.json` (every number, the machine and the
commit) and `cluster.png` (req/s and p99 against hosts) go to `--output-dir`. The exit
status is 1 when a run failed (a server did not start, a client crashed, a time limit
was hit), never because of what the numbers are.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.hosts import HostNetwork, netns_unavailable

from ..checkout import Checkout, Watch, recorded
from ..harness import (
    RESULTS_DIR,
    ROOT,
    ClientError,
    ClientPool,
    ServerError,
    ServerKind,
    machine_info,
    warm_up,
)
from ..report import write_json
from ..scenarios.base import ScenarioError, median_index
from ..scenarios.same_session_burst import combine
from .app import StoreKind
from .fleet import STORES, WORKERS, serving, shared_stores
from .scenarios import (
    COOKIE_NAME,
    PARTITION_SETUPS,
    SpreadBurst,
    burst_across,
    counts_text,
    partition,
)

SERVERS: tuple[ServerKind, ...] = ("gunicorn-sync", "uvicorn")
HOST_COUNTS = (1, 2, 3)
FAILURES = (ClientError, ScenarioError, ServerError, httpx.HTTPError)


def limits_note(cpus: int | None) -> str:
    """What this machine can and cannot show; printed, charted and kept in the JSON."""
    return (
        f"All three hosts, the 6 Redis nodes, PostgreSQL and the client processes share this "
        f"machine's {cpus or '?'} CPU cores: a namespace isolates the network, not the CPU. "
        "Adding a host adds server workers, not cores, so throughput cannot grow with the "
        "number of hosts here; once the cores are busy (see the machine column) more hosts "
        "only mean more processes competing for them and more writers racing on the one "
        "session. What this run can show is that spreading a session over hosts loses "
        "nothing, and what a cut-off host does; scaling needs one machine per host."
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("-c", "--clients", type=int, default=6, help="client processes (6)")
    parser.add_argument("-n", "--requests", type=int, help="requests per client (100; quick 30)")
    parser.add_argument("--rounds", type=int, default=1, help="bursts per row; the median (1)")
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter cuts")
    parser.add_argument("--no-partition", action="store_true", help="skip the partition runs")
    parser.add_argument("--time-limit", type=float, default=60.0, help="per run, seconds (60)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or (args.requests is not None and args.requests < 1):
        parser.error("--clients, --requests and --rounds must be positive")
    return args


# -- CPU of the whole machine ------------------------------------------------------------------


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(value) for value in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


@contextmanager
def machine_busy() -> Iterator[Callable[[], float | None]]:
    """Yields a function giving the cores the whole machine kept busy inside the block."""
    before, after = _cpu_ticks(), None

    def cores() -> float | None:
        if before is None or after is None or after[1] == before[1]:
            return None
        return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)

    yield cores
    after = _cpu_ticks()


# -- the runs -------------------------------------------------------------------------------


def run_scaling(
    network: HostNetwork,
    store: StoreKind,
    url: str,
    server: ServerKind,
    args: argparse.Namespace,
    pool: ClientPool,
) -> list[dict[str, Any]]:
    """Bursts over 1, 2 and 3 hosts all running `server`; one row per host count."""
    rows: dict[int, dict[str, Any]] = {
        n: {"store": store, "server": server, "hosts": n, "workers_per_host": WORKERS[server]}
        for n in HOST_COUNTS
    }
    bursts: dict[int, list[tuple[SpreadBurst, float | None]]] = {n: [] for n in HOST_COUNTS}
    directory = network.directory(f"{store}-{server}")
    kinds = [server] * len(network.hosts)
    try:
        with serving(network.hosts, kinds, store, url, directory) as servers:
            for host in servers:
                warm_up(host.base_url, COOKIE_NAME, WORKERS[server], _deadline(args))
            marks = [len(s.log_text()) for s in servers]
            for _ in range(args.rounds):
                for n in HOST_COUNTS:  # interleaved, so a busy second is spread over rows
                    with machine_busy() as busy:
                        spread = burst_across(
                            servers[:n],
                            clients=args.clients,
                            requests=args.requests,
                            pool=pool,
                            deadline=_deadline(args),
                        )
                    bursts[n].append((spread, busy()))
            logs = "".join(s.log_text()[m:] for s, m in zip(servers, marks, strict=True))
    except FAILURES as exc:
        for n in HOST_COUNTS:
            rows[n].update(status="failed", error=f"{type(exc).__name__}: {exc}")
        logs = ""
    for n in HOST_COUNTS:
        if not bursts[n]:
            continue
        spreads = [spread for spread, _ in bursts[n]]
        middle = median_index([s.result.requests_per_s for s in spreads])
        median, busy_cores = bursts[n][middle]
        result = combine([s.result for s in spreads])
        rows[n].setdefault("status", "ok" if result.partial is None else "failed")
        rows[n].update(
            result=dataclasses.asdict(result),
            statuses_by_host=median.statuses_by_host,
            reads_agree=all(s.reads_agree for s in spreads),
            round_rates=[s.result.requests_per_s for s in spreads],
            machine_busy_cores=busy_cores,
            server_cores=(
                result.server_cpu_s / result.duration_s
                if result.server_cpu_s is not None and result.duration_s > 0
                else None
            ),
        )
    if logs:
        rows[1]["server_log_tracebacks"] = logs.count("Traceback (most recent call last)")
    return list(rows.values())


def run_partition(
    network: HostNetwork, store: StoreKind, url: str, args: argparse.Namespace, pool: ClientPool
) -> dict[str, Any]:
    setup = PARTITION_SETUPS[store]
    cut_for = setup.cut_for if not args.quick else max(4.0, setup.cut_for * 0.8)
    row: dict[str, Any] = {
        "store": store,
        "servers": list(setup.servers),
        "cut_host": setup.cut + 1,
        "cut_for_s": cut_for,
        "clients": args.clients,
    }
    directory = network.directory(f"{store}-partition")
    try:
        with serving(network.hosts, setup.servers, store, url, directory) as servers:
            for host in servers:
                warm_up(host.base_url, COOKIE_NAME, WORKERS[host.subject.server], _deadline(args))
            result = partition(
                network,
                servers,
                cut=setup.cut,
                clients=args.clients,
                pool=pool,
                deadline=_deadline(args),
                cut_for=cut_for,
            )
    except FAILURES as exc:
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        return row
    row.update(status="ok", result=dataclasses.asdict(result))
    return row


def _deadline(args: argparse.Namespace) -> float:
    return time.monotonic() + float(args.time_limit)


# -- the report -----------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def scaling_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| store | server | hosts | workers | req/s | p50 ms | p99 ms | refused (non-2xx) "
        "| re-issued ids | lost updates | app servers' CPU | machine busy |",
        "|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for row in rows:
        head = f"| {row['store']} | {row['server']} | {row['hosts']} "
        head += f"| {row['hosts']}x{row['workers_per_host']} "
        result = row.get("result")
        if result is None:
            lines.append(head + f"| {row.get('status', 'failed')} |" + " |" * 7)
            continue
        rates = row.get("round_rates", [])
        rate = _num(result["requests_per_s"])
        if len(rates) > 1:
            rate += f" ({_num(min(rates))}-{_num(max(rates))})"
        refused = counts_text(result["non_2xx"]) if result["non_2xx"] else "0"
        cells = [
            rate,
            _num(result["latency"]["p50_ms"], 1),
            _num(result["latency"]["p99_ms"], 1),
            refused,
            str(result["reissued_ids"]),
            f"{result['lost_updates']} / {result['keys_acknowledged']}",
            f"{_num(row.get('server_cores'), 2)} cores",
            f"{_num(row.get('machine_busy_cores'), 2)} cores",
        ]
        lines.append(head + "| " + " | ".join(cells) + " |")
    return lines


def partition_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| store | hosts | cut host | link down | cut host while cut off | its answer time "
        "| other hosts while cut | their p99 ms | their refusals | recovered after "
        "| lost updates | re-issued ids |",
        "|---|---|---|--:|---|--:|---|--:|---|--:|--:|--:|",
    ]
    for row in rows:
        servers = ", ".join(row["servers"])
        result = row.get("result")
        if result is None:
            lines.append(f"| {row['store']} | {servers} | {row['status']} |" + " |" * 9)
            continue
        answer_ms = ", ".join(
            f"{status}: {_num(ms / 1000, 1)} s"
            for status, ms in result["cut_host_while_cut_ms"].items()
        )
        refusals = result["others_refusals"]
        recovery = result["recovery_s"]
        cells = [
            row["store"],
            servers,
            f"{result['cut_host']} ({result['cut_server']})",
            f"{_num(result['cut_s'], 1)} s",
            counts_text(result["cut_host_while_cut"]),
            answer_ms or "-",
            counts_text(result["others_while_cut"]),
            _num(result["others_while_cut_p99_ms"], 1),
            f"{refusals['conflict']} conflict, {refusals['store']} store",
            "never" if recovery is None else f"{_num(recovery, 2)} s",
            f"{result['lost_updates']} / {result['keys_acknowledged']}",
            str(result["reissued_ids"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's requirements, what was measured against each, and whether it was met."""
    found: list[dict[str, Any]] = []

    def target(description: str, measured: str, met: bool) -> None:
        found.append({"description": description, "measured": measured, "met": met})

    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in report["scaling"]:
        groups.setdefault((row["store"], row["server"]), []).append(row)
    for (store, server), rows in groups.items():
        results = [row["result"] for row in rows if row.get("result") is not None]
        lost = sum(r["lost_updates"] for r in results)
        reissued = sum(r["reissued_ids"] for r in results)
        acknowledged = sum(r["keys_acknowledged"] for r in results)
        agree = all(row.get("reads_agree") for row in rows)
        measured = (
            f"{lost} lost of {acknowledged} acknowledged, {reissued} re-issued"
            + ("" if agree else ", hosts read different sessions")
            + ("" if len(results) == len(rows) else f", {len(rows) - len(results)} runs failed")
        )
        target(
            f"{store}, {server}: burst over 1, 2, 3 hosts loses nothing and re-issues no id",
            measured,
            len(results) == len(rows) and lost == 0 and reissued == 0 and agree,
        )
    for row in report["partition"]:
        store, result = row["store"], row.get("result")
        if result is None:
            target(f"{store}: one host cut off", f"not measured ({row['status']})", False)
            continue
        cut = f"host {result['cut_host']} ({result['cut_server']})"
        while_cut = result["cut_host_while_cut"]
        target(
            f"{store}: the cut-off {cut} answers 503 while cut off",
            counts_text(while_cut),
            bool(while_cut) and set(while_cut) == {"503"},
        )
        others, refusals = result["others"], result["others_refusals"]
        target(
            f"{store}: the other hosts carry on (2xx; no store error)",
            f"{counts_text(others)}; refusals logged: {refusals['conflict']} conflict, "
            f"{refusals['store']} store",
            bool(result["others_while_cut"].get("200"))
            and set(others) <= {"200", "503"}
            and refusals["store"] == 0
            and others.get("503", 0) <= refusals["conflict"],
        )
        recovery = result["recovery_s"]
        target(
            f"{store}: nothing lost, no id re-issued, the cut host recovers",
            f"{result['lost_updates']} lost of {result['keys_acknowledged']}, "
            f"{result['reissued_ids']} re-issued, "
            + ("never recovered" if recovery is None else f"2xx again {recovery:.2f} s after"),
            result["lost_updates"] == 0
            and result["reissued_ids"] == 0
            and result["reads_agree"]
            and recovery is not None,
        )
    return found


def render_markdown(report: Mapping[str, Any]) -> str:
    meta = report["meta"]
    machine = meta["machine"]
    checkout = Checkout(machine["commit"], bool(machine["dirty"])) if machine["commit"] else None
    params = meta["parameters"]
    rounds = params["rounds"]
    median = f" Median of {rounds} rounds (range in brackets)." if rounds > 1 else ""
    lines = [
        f"# sessionguard on several hosts, {meta['started_at'].replace('T', ' ')}",
        "",
        f"Machine: {machine['cpu_count']} CPUs, load average "
        + " / ".join(f"{v:.2f}" for v in machine.get("load_average") or [])
        + (f", {checkout.describe()}" if checkout else "")
        + ".",
        "",
        f"**What this machine limits.** {meta['limits']}",
        "",
        "## Targets",
        "",
        f"{sum(t['met'] for t in report['targets'])} of {len(report['targets'])} met.",
        "",
        "| target | measured | result |",
        "|---|---|---|",
        *(
            f"| {t['description']} | {t['measured']} | {'met' if t['met'] else '**NOT MET**'} |"
            for t in report["targets"]
        ),
        "",
        "## Same-session burst over 1, 2 and 3 hosts",
        "",
        f"{params['clients']} client processes x {params['requests_per_client']} writes, all "
        "on one session, client i sending to host i mod n (over one http.client "
        "connection each, from the root namespace through the front bridge); the hosts "
        "not in a row sit idle. Every host then reads the session: "
        + ("they agreed in every run." if meta["reads_agree"] else "**they disagreed**.")
        + median,
        "",
        *scaling_table(report["scaling"]),
        "",
        "- *refused*: writes answered non-2xx, never counted as lost: a 503 here is a "
        "compare-and-swap that lost to the other writers 32 times in a row (the server "
        "logs say which); the client was told, and the data is intact.",
        "- *app servers' CPU*: CPU time of every gunicorn/uvicorn process of the hosts in "
        "the row, over the burst's wall time; *machine busy*: all CPUs' busy time over "
        "the same span (clients, stores and servers together); the ceiling is "
        f"{machine['cpu_count']}.",
    ]
    if report["partition"]:
        lines += [
            "",
            "## One host cut off from the store mid-burst",
            "",
            "The same burst for a fixed time over 3 hosts running a mix of servers; "
            "after 1.5 s the cut host's store link is set down (the bridge's end of its "
            "veth: its clients still reach it on the front network) and comes back after "
            "the time shown. *While cut off*: its answers given at least 1 s after the cut "
            "and before the link came back (the right answer is 503). *Recovered after*: "
            "from the link's return to its first 2xx.",
            "",
            *partition_table(report["partition"]),
        ]
    failed = [r for r in [*report["scaling"], *report["partition"]] if r.get("error")]
    lines += [""] + [f"- **{r['store']} failed**: {r['error']}" for r in failed]
    return "\n".join(lines).rstrip() + "\n"


def render_chart(report: Mapping[str, Any], path: Path) -> None:
    """req/s and p99 against the number of hosts, one line per store and server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_ax, p99_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in report["scaling"]:
        result = row.get("result")
        if result is not None:
            series.setdefault(f"{row['store']}, {row['server']}", []).append(
                (row["hosts"], result["requests_per_s"], result["latency"]["p99_ms"])
            )
    for label, points in series.items():
        hosts = [p[0] for p in points]
        rate_ax.plot(hosts, [p[1] for p in points], marker="o", label=label)
        p99_ax.plot(hosts, [p[2] for p in points], marker="o", label=label)
    for ax, title in (
        (rate_ax, "same-session burst: req/s (higher is better)"),
        (p99_ax, "same-session burst: p99 ms (lower is better)"),
    ):
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("hosts (network namespaces on one machine)")
        ax.set_xticks(list(HOST_COUNTS))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    rate_ax.legend(fontsize=8, frameon=False)
    meta = report["meta"]
    machine = meta["machine"]
    figure.suptitle(
        f"sessionguard on several hosts, {meta['started_at'].replace('T', ' ')}",
        x=0.01,
        ha="left",
        fontsize=13,
    )
    footer = (
        f"All hosts share this machine's {machine['cpu_count']} cores (so do the stores and "
        "the clients): more hosts cannot mean more throughput here."
    )
    if machine["commit"]:
        footer += " " + Checkout(machine["commit"], bool(machine["dirty"])).describe() + "."
    figure.text(0.01, 0.01, footer, ha="left", va="bottom", fontsize=8.5)
    figure.tight_layout(rect=(0, 0.04, 1, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.requests = args.requests or (30 if args.quick else 100)
    why = netns_unavailable()
    if why is not None:
        print(f"cannot run the cluster benchmark: {why}", file=sys.stderr)
        return 1
    watch = Watch(ROOT, ignore=[RESULTS_DIR, args.output_dir])
    machine = machine_info()
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    scaling: list[dict[str, Any]] = []
    partitions: list[dict[str, Any]] = []
    with (
        HostNetwork(hosts_count=max(HOST_COUNTS)) as network,
        shared_stores(network, args.stores) as stores,
        ClientPool(args.clients) as pool,
    ):
        for store, missing in stores.unavailable.items():
            print(f"{store}: {missing} not installed; skipped", file=sys.stderr)
        for store, url in stores.urls.items():
            for server in args.servers:
                print(f"{store} on {server}: bursts over 1, 2, 3 hosts", file=sys.stderr)
                scaling += run_scaling(network, store, url, server, args, pool)
            if not args.no_partition:
                print(f"{store}: one host cut off", file=sys.stderr)
                partitions.append(run_partition(network, store, url, args, pool))
    report: dict[str, Any] = {
        "meta": {
            "started_at": started_at.isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - started, 1),
            "parameters": {
                "clients": args.clients,
                "requests_per_client": args.requests,
                "rounds": args.rounds,
                "quick": args.quick,
                "stores": list(stores.urls),
                "servers": args.servers,
                "workers_per_host": dict(WORKERS),
                "time_limit_s": args.time_limit,
            },
            "machine": {**machine, **recorded(watch.measured())},
            "limits": limits_note(os.cpu_count()),
            "reads_agree": all(row.get("reads_agree", True) for row in scaling),
            "network": "3 network namespaces; front and store bridges on private /24s "
            "(loopback and those addresses only, no default route)",
        },
        "scaling": scaling,
        "partition": partitions,
    }
    report["targets"] = targets(report)
    markdown = render_markdown(report)
    print(markdown)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.output_dir / "cluster.json", report)
    render_chart(report, args.output_dir / "cluster.png")
    print(
        f"wrote {args.output_dir}/cluster.json and cluster.png in "
        f"{time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )
    watch.warn_again()
    failed = any(row.get("status") != "ok" for row in [*scaling, *partitions])
    return 1 if failed else 0
