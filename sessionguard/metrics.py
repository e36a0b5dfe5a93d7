"""`Metrics`: a hook that counts session events and times store operations, in process.

```python
metrics = Metrics()
app.add_middleware(SessionMiddleware, secret_key=..., hooks=[metrics])
metrics.count("corrupt", "truncated")      # -> 3
metrics.snapshot()                         # a dict for a /metrics or /health endpoint
```

For Prometheus use `sessionguard.prometheus.PrometheusMetrics`, which counts the same.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import STORE_OPERATIONS, Event, EventKind

__all__ = ["DEFAULT_BUCKETS", "Histogram", "Metrics", "reason_label"]

#: Latency bucket upper bounds in seconds: from a page-cache file read to a slow network.
DEFAULT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0)

# Only these kinds carry a reason from a small fixed set; others (store errors) carry a
# free-text message, which must not become a label.
_LABELLED_REASONS = frozenset({EventKind.CORRUPT, EventKind.EXPIRED})


def reason_label(event: Event) -> str:
    """The event's reason if it is one of a fixed set (corrupt, expired), else `""`."""
    return event.reason or "" if event.kind in _LABELLED_REASONS else ""


@dataclass
class Histogram:
    """Cumulative-free bucket counts: `counts[i]` observations fell at or below `bounds[i]`
    and above the previous bound; the last slot counts the rest."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.observations += 1


class Metrics:
    """Counts every event by kind (and reason, for corrupt records and expiry) and keeps a
    latency histogram per store operation. Thread-safe; cheap enough for every request."""

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self._buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._latency: dict[str, Histogram] = {}

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._counts[event.kind.value, reason_label(event)] += 1
            if event.kind in STORE_OPERATIONS and event.duration is not None:
                histogram = self._latency.get(event.kind.value)
                if histogram is None:
                    histogram = self._latency[event.kind.value] = Histogram(self._buckets)
                histogram.observe(event.duration)

    def count(self, kind: str, reason: str | None = None) -> int:
        """How many events of `kind` (and of that `reason`, if given) were seen."""
        with self._lock:
            if reason is not None:
                return self._counts[kind, reason]
            return sum(n for (k, _), n in self._counts.items() if k == kind)

    def latency(self, operation: str) -> Histogram | None:
        with self._lock:
            return self._latency.get(operation)

    def snapshot(self) -> dict[str, Any]:
        """Everything counted so far, as plain data."""
        with self._lock:
            counts: dict[str, Any] = {}
            for (kind, reason), n in sorted(self._counts.items()):
                if reason:
                    counts.setdefault(kind, {})[reason] = n
                else:
                    counts[kind] = n
            latency = {
                op: {
                    "buckets": dict(zip([*map(str, h.bounds), "+Inf"], h.counts, strict=True)),
                    "count": h.observations,
                    "sum": h.total,
                }
                for op, h in sorted(self._latency.items())
            }
        return {"events": counts, "latency_seconds": latency}
