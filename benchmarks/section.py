"""One part of the benchmark report: a scenario's table, raw numbers, verdicts and bars.

Every scenario, whether it drives real servers or calls code in-process, returns a
`Section`; `report.py` turns the list of them into `latest.md`, `latest.json` and the
chart `latest.png`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bar", "Section", "Target"]


@dataclass(frozen=True)
class Target:
    """A target from the issue, what was measured against it, and whether it was met."""

    description: str  # "burst req/s of sg-wsgi-file >= every file-based peer's"
    measured: str  # "0.93x of flask-session-fs (412 vs 443 req/s)"
    met: bool


@dataclass(frozen=True)
class Bar:
    """One bar of the chart: `label` in panel `panel`, sessionguard's bars highlighted."""

    panel: str  # e.g. "same-session burst: req/s (higher is better)"
    label: str
    value: float
    is_sessionguard: bool


@dataclass(frozen=True)
class Section:
    key: str  # stable id, e.g. "same-session-burst"
    title: str
    markdown: str  # the table and its notes, ready to print
    data: Mapping[str, Any]  # JSON-able raw numbers for latest.json
    targets: Sequence[Target] = field(default_factory=tuple)
    bars: Sequence[Bar] = field(default_factory=tuple)
