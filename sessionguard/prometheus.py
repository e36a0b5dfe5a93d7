"""`PrometheusMetrics`: the session events as Prometheus metrics (`sessionguard[prometheus]`).

```python
from sessionguard.prometheus import PrometheusMetrics
app.add_middleware(SessionMiddleware, secret_key=..., hooks=[PrometheusMetrics()])
```

Exports `sessionguard_events_total{kind, reason}` (reason only for corrupt records and
expiry, so label values stay a small fixed set) and
`sessionguard_store_operation_seconds{operation}`, a histogram per store operation.
"""

from __future__ import annotations

from .errors import ConfigurationError
from .events import STORE_OPERATIONS, Event
from .metrics import DEFAULT_BUCKETS, reason_label

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError(
        "PrometheusMetrics needs prometheus-client: pip install 'sessionguard[prometheus]'"
    ) from exc

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics:
    """A hook that records every session event in a Prometheus registry."""

    def __init__(
        self, registry: CollectorRegistry = REGISTRY, *, namespace: str = "sessionguard"
    ) -> None:
        self.events = Counter(
            "events",
            "Session events by kind (load, save, corrupt, merge, conflict, ...)",
            ["kind", "reason"],
            namespace=namespace,
            registry=registry,
        )
        self.latency = Histogram(
            "store_operation_seconds",
            "Time spent in each session store operation",
            ["operation"],
            namespace=namespace,
            registry=registry,
            buckets=DEFAULT_BUCKETS,
        )

    def __call__(self, event: Event) -> None:
        self.events.labels(event.kind.value, reason_label(event)).inc()
        if event.kind in STORE_OPERATIONS and event.duration is not None:
            self.latency.labels(event.kind.value).observe(event.duration)
