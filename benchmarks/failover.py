"""What a Redis failover does to the writes the app acknowledged, with `replicas=1` (each
save waits for Redis WAIT) and without (Redis replication is asynchronous).

Each round starts a Redis Cluster of its own (3 masters, 3 replicas on loopback ports),
runs the same-session burst of tests/failover.py through the real WSGI middleware, and
once 60 writes were acknowledged cuts the replica of the session's master off for a
second (it falls behind), kills the master, lets the replica back (it is promoted), and
restarts the old master 3 s later (as its supervisor would: it rejoins as a replica).
Then it counts the acknowledged writes the session lost, the 503s answered, and how long
until writes were served again.
A Sentinel-managed master (with two replicas, both cut off) is failed over the same way.

    python -m benchmarks.failover [--rounds N]

Prints a table and writes benchmarks/results/failover.json. Measures, never asserts;
tests/integration/test_redis_failover.py asserts the `replicas=1` claim.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.sentinel import Sentinel

from benchmarks.checkout import Watch, recorded
from benchmarks.harness import RESULTS_DIR, ROOT, machine_info
from sessionguard.stores.redis import RedisStore
from tests.failover import (
    Burst,
    kill_master_while_its_replica_lags,
    kill_master_while_replicas_lag,
    run_burst,
    sentinel_group,
)
from tests.servers import RedisCluster

RESULTS = Path(__file__).resolve().parent / "results" / "failover.json"  # in RESULTS_DIR


def cluster_round(binary: str, cli: str, replicas: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        cluster = RedisCluster(binary, cli, Path(directory))
        cluster.start()
        prefix = "failover:"
        store = RedisStore(cluster.url, cluster=True, prefix=prefix, replicas=replicas)

        try:
            burst, final, broke_at = run_burst(
                store,
                clients=6,
                writes_per_client=400,
                breaks=kill_master_while_its_replica_lags(cluster, prefix),
                break_after=60,
            )
        finally:
            store.close()
            time.sleep(3.5)  # the restart timer
            cluster.stop()
    return summary(burst, final, broke_at)


def sentinel_round(binary: str, replicas: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name, sentinel_group(binary, Path(name)) as group:
        (master, *lagging), port = group
        watcher = Sentinel([("127.0.0.1", port)], socket_timeout=1.0)  # type: ignore[no-untyped-call]
        client = watcher.master_for("sessions", socket_timeout=1.0)  # type: ignore[no-untyped-call]
        store = RedisStore(client=client, prefix="failover:", replicas=replicas)
        burst, final, broke_at = run_burst(
            store,
            clients=6,
            writes_per_client=400,
            breaks=lambda: kill_master_while_replicas_lag(master, lagging),
            break_after=60,
            # Sentinel reconfigures the other replica after the promotion; with
            # replicas=1 writes wait for it, which took over 10 s in some runs.
            run_after_break=20.0,
        )
        client.close()
    return summary(burst, final, broke_at)


def summary(burst: Burst, final: dict[str, Any], broke_at: float) -> dict[str, Any]:
    recovered = burst.recovered_after(broke_at)
    return {
        "acknowledged": len(burst.acknowledged),
        "lost": len(burst.lost(final)),
        "refused_503": sum(1 for _, status, _ in burst.refused if status == 503),
        "served_again_after_s": None if recovered is None else round(recovered, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="cluster rounds per setting")
    args = parser.parse_args()
    watch = Watch(ROOT, ignore=[RESULTS_DIR])
    # Every refused request logs a line; the table says how many there were.
    logging.getLogger("sessionguard").setLevel(logging.CRITICAL)
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise SystemExit("needs redis-server and redis-cli: apt-get install redis-server")
    rows = []
    for replicas in (0, 1):
        for n in range(args.rounds):
            rows.append(
                {"setup": "cluster", "replicas": replicas, "round": n + 1}
                | cluster_round(binary, cli, replicas)
            )
            print(rows[-1], flush=True)
        rows.append(
            {"setup": "sentinel", "replicas": replicas, "round": 1}
            | sentinel_round(binary, replicas)
        )
        print(rows[-1], flush=True)
    meta = {"machine": {**machine_info(), **recorded(watch.measured())}}
    RESULTS.write_text(json.dumps({"meta": meta, "rounds": rows}, indent=2) + "\n")
    print()
    print("| setup | replicas | round | acknowledged | lost | 503s | served again after |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        again = row["served_again_after_s"]
        print(
            f"| {row['setup']} | {row['replicas']} | {row['round']} | {row['acknowledged']} "
            f"| {row['lost']} | {row['refused_503']} | {'-' if again is None else f'{again} s'} |"
        )
    print(f"\nwrote {RESULTS}")
    watch.warn_again()


if __name__ == "__main__":
    main()
