"""Session events reach hooks, `Metrics` counts them, and Prometheus exports them."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from sessionguard.events import Event, EventKind
from sessionguard.metrics import Metrics
from sessionguard.prometheus import PrometheusMetrics

from .apps import CountingFileStore, cookie_header, session_set_cookie
from .conftest import ClientFactory


async def test_metrics_count_loads_saves_corruption_and_time_store_operations(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    metrics = Metrics()
    registry = CollectorRegistry()
    prometheus = PrometheusMetrics(registry)
    client = make_client(hooks=[metrics, prometheus])

    created = session_set_cookie(await client.get("/count"))
    assert created is not None
    cookie = cookie_header(created.value)
    await client.get("/count", cookie=cookie)  # load + merge-free update
    await client.get("/read", cookie=cookie)  # load only
    path = store._locate(created.value.split(".")[0])[1]
    with open(path, "r+b") as damaged:
        damaged.truncate(10)  # in place, with a fresh mtime: corrupt all the same
    await client.get("/read", cookie=cookie)

    assert metrics.count("load") == 3
    assert metrics.count("save") == 1  # the new session
    assert metrics.count("update") == 1  # the second /count
    assert metrics.count("corrupt", "truncated") == 1
    assert metrics.count("merge") == 0
    load_latency = metrics.latency("load")
    assert load_latency is not None and load_latency.observations == 3
    assert metrics.snapshot()["events"]["corrupt"] == {"truncated": 1}

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("sessionguard_events_total", kind="load", reason="") == 3
    assert sample("sessionguard_events_total", kind="corrupt", reason="truncated") == 1
    assert sample("sessionguard_store_operation_seconds_count", operation="load") == 3
    assert sample("sessionguard_store_operation_seconds_count", operation="update") == 1


async def test_regeneration_invalidation_and_bad_cookies_are_events(
    make_client: ClientFactory,
) -> None:
    seen: list[Event] = []
    client = make_client(hooks=[seen.append])

    created = session_set_cookie(await client.get("/count"))
    assert created is not None
    await client.post("/login", cookie=cookie_header(created.value))
    await client.get("/read", cookie=cookie_header("forged." + "A" * 43))
    logged_in = [e for e in seen if e.kind == EventKind.REGENERATE]
    kinds = {e.kind for e in seen}

    assert len(logged_in) == 1
    assert EventKind.REJECTED_COOKIE in kinds
    session_id = created.value.split(".")[0]
    assert all(e.session is None or session_id not in e.session for e in seen)
    assert all(e.session is None or len(e.session) == 12 for e in seen)


async def test_a_failing_hook_is_logged_and_never_fails_the_request(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("metrics backend down")

    client = make_client(hooks=[broken])
    with caplog.at_level(logging.ERROR, logger="sessionguard"):
        response = await client.get("/count")

    assert response.status_code == 200
    assert response.json() == {"count": 1}
    assert "hook" in caplog.text and "metrics backend down" in caplog.text
