"""Several app hosts serving the same sessions from one store, and one of them cut off.

Three hosts, each a network namespace this module creates (`tests.hosts`), run the
benchmarks' session app (`benchmarks.cluster.app`) on gunicorn and on uvicorn against a
shared store: a Redis Cluster (3 masters, 3 replicas) and then PostgreSQL, both listening
on a bridge in the root namespace. Client processes in the root namespace (the
benchmarks' `ClientPool`) reach the hosts on a second bridge, so that cutting a host's
store link leaves it reachable: it must answer 503, the other hosts must go on
answering, nothing acknowledged may be lost, and the host must recover once the link is
back. The scenarios are the ones `make bench-cluster` measures (`benchmarks.cluster`).

Traffic stays on this machine: loopback and the addresses of the namespaces made here
(which have no default route). Every wait is bounded, and everything started here is
stopped in fixture teardown: servers, stores, client processes, then the namespaces and
links. Needs root and iproute2; without them the module is skipped locally and fails
under `SESSIONGUARD_REQUIRE_SERVERS=1`, like the other server tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from benchmarks.cluster.app import StoreKind
from benchmarks.cluster.fleet import STORES, HostServer, Stores, serving, shared_stores
from benchmarks.cluster.scenarios import (
    COOKIE_NAME,
    PARTITION_SETUPS,
    PartitionResult,
    PartitionSetup,
    burst_across,
    partition,
    refusals,
)
from benchmarks.harness import ROOT, ClientPool, count_exceptions
from tests.conftest import missing
from tests.hosts import HostNetwork, ip, netns_unavailable, remove_stale

pytestmark = [pytest.mark.integration, pytest.mark.hosts]

CLIENTS = 6  # two per host
REQUESTS = 40  # per client, in the burst
TIME_LIMIT = 60.0  # per scenario


@dataclass(frozen=True)
class Fleet:
    store: StoreKind
    setup: PartitionSetup
    servers: list[HostServer]


@pytest.fixture(scope="module")
def network() -> Iterator[HostNetwork]:
    why = netns_unavailable()
    if why is not None:
        missing(f"network namespaces ({why})", "apt-get install iproute2, and run as root")
    with HostNetwork(hosts_count=3) as network:
        yield network


@pytest.fixture(scope="module")
def stores(network: HostNetwork) -> Iterator[Stores]:
    with shared_stores(network) as stores:
        yield stores


@pytest.fixture(scope="module")
def pool() -> Iterator[ClientPool]:
    with ClientPool(CLIENTS) as pool:
        yield pool


@pytest.fixture(scope="module", params=STORES)
def fleet(
    request: pytest.FixtureRequest,
    network: HostNetwork,
    stores: Stores,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    """The three hosts serving the app on one store (each store in turn)."""
    store: StoreKind = request.param
    if store not in stores.urls:
        missing(stores.unavailable[store], "apt-get install redis-server postgresql")
    setup = PARTITION_SETUPS[store]
    directory = tmp_path_factory.mktemp(f"hosts-{store}")
    with serving(network.hosts, setup.servers, store, stores.urls[store], directory) as servers:
        yield Fleet(store, setup, servers)


@pytest.fixture(scope="module")
def partitioned(fleet: Fleet, network: HostNetwork, pool: ClientPool) -> PartitionResult:
    """The burst with the cut host's store link down part-way (once per store)."""
    return partition(
        network,
        fleet.servers,
        cut=fleet.setup.cut,
        clients=CLIENTS,
        pool=pool,
        deadline=time.monotonic() + TIME_LIMIT,
        cut_for=fleet.setup.cut_for,
    )


def test_a_cookie_from_one_host_opens_the_same_session_on_every_host(fleet: Fleet) -> None:
    first, *others = fleet.servers
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        opened = client.post(f"{first.base_url}/set/opened")
        assert opened.status_code == 200
        cookie = {"cookie": f"{COOKIE_NAME}={opened.cookies[COOKIE_NAME]}"}
        for server in others:
            response = client.post(
                f"{server.base_url}/set/host-{server.host.index}", headers=cookie
            )
            assert response.status_code == 200
        reads = [client.get(f"{s.base_url}/keys", headers=cookie).json() for s in fleet.servers]
    assert reads == [["host-2", "host-3", "opened"]] * 3


def test_same_session_burst_spread_over_hosts_loses_nothing(fleet: Fleet, pool: ClientPool) -> None:
    marks = [len(server.log_text()) for server in fleet.servers]
    spread = burst_across(
        fleet.servers,
        clients=CLIENTS,
        requests=REQUESTS,
        pool=pool,
        deadline=time.monotonic() + TIME_LIMIT,
    )
    logs = "".join(s.log_text()[mark:] for s, mark in zip(fleet.servers, marks, strict=True))
    result = spread.result
    assert result.keys_acknowledged > 0
    assert result.lost_updates == 0, result
    assert result.reissued_ids == 0, result
    assert spread.reads_agree
    # Every host took its share; a refused write may only be a 503 for a compare-and-swap
    # that kept losing to the other writers (refused, not lost), never a store error.
    assert all(statuses.get("200") for statuses in spread.statuses_by_host.values())
    assert set(result.non_2xx) <= {"503"}, result.non_2xx
    assert refusals(logs)["store"] == 0, logs
    assert count_exceptions(logs)[0] == 0, logs


def test_host_cut_off_from_the_store_answers_503(
    fleet: Fleet, partitioned: PartitionResult
) -> None:
    result = partitioned
    assert result.cut_host_before.get("200"), result
    # Every answer it gave while cut off is a 503 (with Retry-After: the benchmarks'
    # client does not keep headers; tests/integration/test_outages.py checks them).
    assert result.cut_host_while_cut, result
    assert set(result.cut_host_while_cut) == {"503"}, result
    assert result.cut_host_tracebacks == 0, result


def test_other_hosts_carry_on_while_one_is_cut_off(partitioned: PartitionResult) -> None:
    result = partitioned
    assert result.others_while_cut.get("200"), result
    assert set(result.others) <= {"200", "503"}, result
    # Their only refusals are compare-and-swap conflicts among the writers; the cut
    # never reaches them (with PostgreSQL, see POSTGRES_SETTINGS in benchmarks.cluster.fleet).
    assert result.others_refusals["store"] == 0, result
    assert result.others.get("503", 0) <= result.others_refusals["conflict"], result
    assert result.others_tracebacks == 0, result


def test_nothing_is_lost_and_the_cut_host_recovers(partitioned: PartitionResult) -> None:
    result = partitioned
    assert result.keys_acknowledged > 0
    assert result.lost_updates == 0, result
    assert result.reissued_ids == 0, result
    assert result.reads_agree, result
    assert result.recovery_s is not None, result
    assert result.cut_host_after.get("200"), result
    assert set(result.cut_host_after) <= {"200", "503"}, result


# A run that is killed leaves its namespace, links, directories and processes behind.
KILLED_RUN = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from tests.hosts import HostNetwork
    network = HostNetwork(hosts_count=1)
    network.create()
    directory = network.directory("store")
    host = network.hosts[0]
    in_namespace = subprocess.Popen(host.command(["sleep", "60"]))
    from_directory = subprocess.Popen(["sleep", "60"], cwd=directory)
    names = [host.namespace, host.front_link, network.store_bridge, str(directory)]
    pids = [in_namespace.pid, from_directory.pid]
    with open(sys.argv[1], "w") as out:
        json.dump({"names": names, "pids": pids}, out)
    time.sleep(60)
    """
)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_leftovers_of_a_killed_run_are_removed_and_a_live_run_is_left_alone(
    network: HostNetwork, tmp_path: Path
) -> None:
    report = tmp_path / "killed-run.json"
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(report)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20.0
        while not report.exists() or not report.read_text().endswith("}"):
            assert child.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait(timeout=10)
    left = json.loads(report.read_text())
    namespace, link, bridge, directory = left["names"]
    assert namespace in ip("netns", "list")

    removed = remove_stale()

    assert {namespace, bridge, directory} <= set(removed)  # the veth goes with the namespace
    assert namespace not in ip("netns", "list")
    assert link not in ip("link", "show") and bridge not in ip("link", "show")
    assert not os.path.exists(directory)
    deadline = time.monotonic() + 10.0
    while any(_running(pid) for pid in left["pids"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in left["pids"])
    # This module's own network belongs to a live process: untouched.
    assert all(host.namespace in ip("netns", "list") for host in network.hosts)
    assert network.front_bridge in ip("link", "show")
