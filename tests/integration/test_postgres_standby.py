"""PostgreSQL across a switch to a standby: the primary killed under a same-session burst,
the standby promoted, the app (never restarted) served again from it.

The store's URL names both servers in libpq's multi-host form and asks for the one that
accepts writes (`...?host=127.0.0.1:P1&host=127.0.0.1:P2&target_session_attrs=read-write`).
While the primary is dead and the standby not yet promoted no server qualifies, and each
request gets 503 with Retry-After; once the standby is promoted, the pool's next
connection lands on it. Before the kill, replication is cut for 1.5 s (the standby
lags, as behind a network hiccup) while the burst goes on. With synchronous replication
the primary acknowledges nothing the standby does not have, so the switch loses no
acknowledged write (the writes of those seconds answer 503 instead); without it, what
the primary acknowledged meanwhile is gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sessionguard.stores.sql import SQLStore
from tests.failover import Burst, run_burst
from tests.pgstandby import ReplicatedPostgres, replicated_postgres
from tests.servers import PostgresServer

pytestmark = pytest.mark.integration

#: How long the standby lags behind the primary before the primary dies: longer than
#: SQLStore's `io_timeout` (1 s), so that with synchronous replication the commits stuck
#: waiting for the standby answer 503 before the kill.
LAG = 1.5
#: From the primary's death to the first write served again: the promotion, plus the
#: pool finding out (a dead connection, a refused one, a standby still read-only). A bound
#: for this machine, where it takes about 0.1 to 0.3 s.
RECOVERY_BOUND = 5.0


@pytest.fixture
def synchronous_pair(postgres_server: PostgresServer) -> Iterator[ReplicatedPostgres]:
    with replicated_postgres(postgres_server.bindir, synchronous=True) as pair:
        yield pair


@pytest.fixture
def asynchronous_pair(postgres_server: PostgresServer) -> Iterator[ReplicatedPostgres]:
    with replicated_postgres(postgres_server.bindir, synchronous=False) as pair:
        yield pair


def switch_under_burst(pair: ReplicatedPostgres) -> tuple[Burst, list[str]]:
    """A same-session burst through the WSGI middleware while the standby lags, the
    primary is killed and the standby promoted: what the clients saw, and the
    acknowledged writes the final session lacks. Asserts what any switch must show."""
    store = SQLStore(pair.url)
    started = time.monotonic()
    try:
        burst, final, _ = run_burst(
            store,
            clients=6,
            writes_per_client=5000,  # more than they can send: the time bounds end it
            breaks=pair.fail_over_while_standby_lags(LAG),
            break_after=60,
            run_after_break=LAG + 4.0,
        )
    finally:
        store.close()
    switch, lost = pair.switch, burst.lost(final)
    recovered = burst.recovered_after(switch.killed_at)
    assert recovered is not None, "no write was served after the switch"
    print(
        f"\n{len(burst.acknowledged)} acknowledged, {len(lost)} lost, {len(burst.refused)} "
        f"refused; the primary killed {switch.killed_at - switch.cut_at:.2f} s after the "
        f"cut, the standby promoted {switch.promoted_at - switch.killed_at:.2f} s after the "
        f"kill, writes served again {recovered:.2f} s after it; "
        f"burst {time.monotonic() - started:.1f} s"
    )
    # While no server accepts writes: 503 with Retry-After, never a 500 or a 400.
    assert burst.refused, "the switch refused nothing: did it happen?"
    assert all(status == 503 and retry == "5" for _, status, retry in burst.refused), {
        (status, retry) for _, status, retry in burst.refused
    }
    # Then served again from the promoted standby, by the same app and store.
    assert recovered < RECOVERY_BOUND, recovered
    assert len(burst.acknowledged) > 60
    return burst, lost


def test_with_synchronous_replication_a_switch_loses_no_acknowledged_write(
    synchronous_pair: ReplicatedPostgres,
) -> None:
    burst, lost = switch_under_burst(synchronous_pair)
    assert lost == []
    # The commits of the lag waited for a standby that never confirmed them: 503s.
    switch = synchronous_pair.switch
    assert any(switch.cut_at <= t < switch.killed_at for t, _, _ in burst.refused)


def test_without_synchronous_replication_a_switch_loses_what_the_standby_lacked(
    asynchronous_pair: ReplicatedPostgres,
) -> None:
    burst, lost = switch_under_burst(asynchronous_pair)
    # The primary acknowledged the writes of the lag alone; the promoted standby never
    # had them. (The same switch as above: only synchronous replication tells them apart.)
    assert lost
    switch = asynchronous_pair.switch
    assert not any(switch.cut_at <= t < switch.killed_at for t, _, _ in burst.refused)
