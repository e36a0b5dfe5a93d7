"""What the in-process scenarios share: interleaved timing batches and Markdown tables.

The machine these run on is small and busy, so every comparison is measured the same
way: each case is warmed up and calibrated to a batch of about `batch_seconds`, then
the cases take turns, one batch each per round (the order rotating every round), and a
case's number is the median of its batches. A burst of other work then spoils one batch
of every case instead of every batch of one case.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Case",
    "Timing",
    "fmt_ratio",
    "fmt_us",
    "markdown_table",
    "paired_ratio",
    "time_cases",
]


@dataclass(frozen=True)
class Case:
    """Something to time: `run(n)` performs `n` operations and returns the nanoseconds taken."""

    name: str
    run: Callable[[int], int]


@dataclass(frozen=True)
class Timing:
    """A case's result: the median over its batches, in nanoseconds per operation."""

    median_ns: float
    batches_ns: tuple[float, ...]
    ops_per_batch: int

    @property
    def us(self) -> float:
        return self.median_ns / 1000

    @property
    def spread(self) -> float:
        """Highest over lowest batch: how noisy this case's batches were."""
        return max(self.batches_ns) / min(self.batches_ns) if self.batches_ns else float("nan")


def _calibrate(case: Case, warmup_seconds: float, batch_seconds: float, max_ops: int) -> int:
    """Warm `case` up for about `warmup_seconds`; return the ops that fill one batch."""
    n, spent, per_op = 1, 0.0, 0.0
    while True:
        elapsed = case.run(n)
        spent += elapsed / 1e9
        per_op = elapsed / n
        if spent >= warmup_seconds or n >= max_ops:
            break
        n = min(n * 2, max_ops)
    return max(3, min(max_ops, int(batch_seconds * 1e9 / max(per_op, 1.0))))


def time_cases(
    cases: Sequence[Case],
    *,
    rounds: int,
    deadline: float,
    batch_seconds: float = 0.02,
    warmup_seconds: float = 0.03,
    max_ops: int = 20_000,
) -> dict[str, Timing]:
    """Time every case in interleaved batches; stop early (after one round) at `deadline`."""
    if not cases:
        return {}
    sizes = {case.name: _calibrate(case, warmup_seconds, batch_seconds, max_ops) for case in cases}
    batches: dict[str, list[float]] = {case.name: [] for case in cases}
    for round_no in range(rounds):
        if round_no and time.monotonic() >= deadline:
            break
        shift = round_no % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            n = sizes[case.name]
            batches[case.name].append(case.run(n) / n)
    return {
        name: Timing(statistics.median(values), tuple(values), sizes[name])
        for name, values in batches.items()
    }


def paired_ratio(case: Timing, base: Timing) -> float:
    """Median over rounds of `case`'s batch over `base`'s batch in the same round.

    Batches of one round run moments apart, so a slow spell of the machine cancels out
    of each round's ratio; the median then drops the rounds where it did not.
    """
    ratios = [a / b for a, b in zip(case.batches_ns, base.batches_ns, strict=False) if b > 0]
    return statistics.median(ratios) if ratios else float("nan")


def fmt_us(value: float) -> str:
    if value != value:  # NaN: not measured
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def fmt_ratio(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}x"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1
) -> str:
    """A Markdown table; columns from `numeric_from` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
