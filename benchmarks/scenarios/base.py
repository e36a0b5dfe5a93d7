"""What a scenario is, what one subject's run under it produced, and helpers they share."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from ..harness import ClientPool, RunParams, Server, Subject
from ..section import Bar, Section, Target

__all__ = [
    "Result",
    "Scenario",
    "ScenarioError",
    "SubjectRun",
    "counterpart_json",
    "counterpart_table",
    "exceptions_cell",
    "failures",
    "first_line",
    "median_index",
    "median_of",
    "merged_counts",
    "rate_text",
    "ratio_text",
    "run_json",
    "server_section",
    "sessionguard_bars",
    "summed",
]


class Result(Protocol):
    """What every scenario's result says about itself."""

    @property
    def partial(self) -> str | None:
        """Why the numbers cover less than the planned load (time limit hit), or `None`."""

    @property
    def requests_per_s(self) -> float:
        """Throughput, the number rounds are ranked by."""

    @property
    def lost_updates(self) -> int:
        """Acknowledged writes missing at the end."""

    @property
    def keys_acknowledged(self) -> int:
        """Writes answered 2xx."""


_R = TypeVar("_R", bound=Result)


class ScenarioError(RuntimeError):
    """The server answered, but not in a way the scenario can measure (no cookie, bad JSON)."""


@dataclass(frozen=True)
class SubjectRun(Generic[_R]):
    """One subject under one scenario: its numbers, or why there are none.

    With `--rounds R` it stands for R runs: `result` is what the scenario's `combine`
    made of them, `round_rates` each round's req/s, and the server log counts are sums.
    """

    subject: Subject
    workers: int
    status: Literal["ok", "failed", "skipped"]
    result: _R | None = None
    error: str | None = None
    #: Tracebacks, and lines logged at ERROR or CRITICAL, in the server's captured output
    #: while this scenario ran (server start-up is counted with the first scenario).
    server_tracebacks: int = 0
    server_error_lines: int = 0
    first_traceback: str | None = None
    first_error_lines: tuple[str, ...] = ()
    round_rates: tuple[float, ...] = ()


@dataclass(frozen=True)
class Scenario(Generic[_R]):
    """A traffic pattern against a started server.

    `run(server, subject, params, deadline, pool)` drives the server with the pool's
    client processes and returns the raw numbers. It must be done by `deadline` (a
    `time.monotonic()` value): stop sending early enough to collect the clients'
    numbers, and say so in the result's `partial`. `combine` makes one result of
    several rounds; `section` turns every subject's run into the report's `Section`.
    """

    name: str
    title: str
    #: How the load is generated, for the report (one sentence).
    client: str
    run: Callable[[Server, Subject, RunParams, float, ClientPool], _R]
    combine: Callable[[Sequence[_R]], _R]
    section: Callable[[Sequence[SubjectRun[_R]], RunParams], Section]


def median_index(values: Sequence[float]) -> int:
    """The index of the median value (the lower one of an even count); NaN sorts first."""
    order = sorted(range(len(values)), key=lambda i: (math.isfinite(values[i]), values[i]))
    return order[(len(order) - 1) // 2]


def ratio_text(ratio: float) -> str:
    # Truncated, not rounded: 0.799 must not print as the 0.80 it fails to reach.
    return f"{math.floor(ratio * 100) / 100:.2f}x" if math.isfinite(ratio) else "n/a"


def rate_text(run: SubjectRun[Any]) -> str:
    """req/s, with the spread over rounds when there was more than one."""
    assert run.result is not None
    text = f"{run.result.requests_per_s:.0f}"
    if len(run.round_rates) > 1:
        finite = [rate for rate in run.round_rates if math.isfinite(rate)]
        if finite:
            text += f" ({min(finite):.0f}-{max(finite):.0f})"
    return text


def exceptions_cell(run: SubjectRun[Any]) -> str:
    text = str(run.server_tracebacks)
    others = run.server_error_lines - run.server_tracebacks
    return f"{text} (+{others} errors logged)" if others > 0 else text


def first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def failures(runs: Sequence[SubjectRun[Any]]) -> list[str]:
    """Markdown notes for the runs that failed or were skipped."""
    return [
        f"- **{run.subject.name} {run.status}**: {first_line(run.error)}"
        for run in runs
        if run.error
    ]


def sessionguard_bars(
    panel: str,
    runs: Sequence[SubjectRun[Any]],
    value: Callable[[Any], float | None],
) -> list[Bar]:
    """One bar per run with a result whose `value(result)` is a finite number.

    sessionguard's merge=False baselines are drawn with the peers: nobody should deploy them.
    """
    baselines = {run.subject.baseline for run in runs if run.subject.baseline}
    bars = []
    for run in runs:
        number = value(run.result) if run.result is not None else None
        if number is not None and math.isfinite(number):
            highlighted = run.subject.is_sessionguard and run.subject.name not in baselines
            bars.append(Bar(panel, run.subject.name, number, highlighted))
    return bars


def _counterpart_pairs(runs: Sequence[SubjectRun[_R]]) -> list[tuple[_R, str, _R, str]]:
    """(result, name, counterpart's result, its name) for each `Subject.counterparts`
    measured in this run."""
    measured = {run.subject.name: run.result for run in runs if run.result is not None}
    return [
        (ours, run.subject.name, theirs, name)
        for run in runs
        if (ours := run.result) is not None
        for name in run.subject.counterparts
        if (theirs := measured.get(name)) is not None
    ]


def _rate_ratio(ours: Result, theirs: Result) -> float:
    if theirs.requests_per_s > 0 and math.isfinite(ours.requests_per_s):
        return ours.requests_per_s / theirs.requests_per_s
    return math.nan


def counterpart_table(runs: Sequence[SubjectRun[Any]]) -> list[str]:
    """Markdown lines: each subject against its `counterparts` (the same app and server on
    another session engine); none when no pair was measured."""
    pairs = _counterpart_pairs(runs)
    if not pairs:
        return []
    lines = [
        "",
        "The same app on the same server, only the session engine differs (ratio of "
        "req/s; above 1.00x the subject is faster than the one it is set against):",
        "",
        "| subject | req/s | lost updates | against | req/s | lost updates | ratio |",
        "|---|--:|--:|---|--:|--:|--:|",
    ]
    for ours, name, theirs, other in pairs:
        lines.append(
            f"| {name} | {ours.requests_per_s:.0f} "
            f"| {ours.lost_updates} / {ours.keys_acknowledged} "
            f"| {other} | {theirs.requests_per_s:.0f} "
            f"| {theirs.lost_updates} / {theirs.keys_acknowledged} "
            f"| {ratio_text(_rate_ratio(ours, theirs))} |"
        )
    return lines


def counterpart_json(runs: Sequence[SubjectRun[Any]]) -> list[dict[str, Any]]:
    """The pairs of `counterpart_table`, for `latest.json`."""
    return [
        {
            "subject": name,
            "counterpart": other,
            "requests_per_s_ratio": _rate_ratio(ours, theirs),
            "lost_updates": ours.lost_updates,
            "counterpart_lost_updates": theirs.lost_updates,
        }
        for ours, name, theirs, other in _counterpart_pairs(runs)
    ]


def run_json(run: SubjectRun[Any]) -> dict[str, Any]:
    """One subject's run for `latest.json`: configuration, status, log counts, raw result."""
    subject = run.subject
    return {
        "subject": subject.name,
        "description": subject.description,
        "family": subject.family,
        "storage": subject.storage,
        "server": subject.server,
        "app": subject.app,
        "workers": run.workers,
        "settings": dict(subject.settings),
        "baseline": subject.baseline,
        "counterparts": list(subject.counterparts),
        "status": run.status,
        "error": run.error,
        "round_rates": list(run.round_rates),
        "server_log": {
            "tracebacks": run.server_tracebacks,
            "error_lines": run.server_error_lines,
            "first_traceback": run.first_traceback,
            "first_error_lines": list(run.first_error_lines),
        },
        "result": dataclasses.asdict(run.result) if run.result is not None else None,
    }


def server_section(
    scenario: Scenario[_R],
    runs: Sequence[SubjectRun[_R]],
    params: RunParams,
    *,
    markdown: str,
    targets: Sequence[Target],
    bars: Sequence[Bar],
    **data: Any,
) -> Section:
    """A server scenario's `Section`: its table, targets and bars, and for `latest.json` the
    load, the scenario's own `data`, how the clients send, and every run with its
    counterpart pairs."""
    return Section(
        key=scenario.name,
        title=scenario.title,
        markdown=markdown,
        data={
            "clients": params.clients,
            "requests_per_client": params.requests,
            **data,
            "client": scenario.client,
            "runs": [run_json(run) for run in runs],
            "counterparts": counterpart_json(runs),
        },
        targets=tuple(targets),
        bars=tuple(bars),
    )


def median_of(results: Sequence[_R]) -> _R:
    """The result of the median round by throughput."""
    return results[median_index([result.requests_per_s for result in results])]


def summed(values: Sequence[int | None]) -> int | None:
    """The sum over rounds, or `None` when the subject cannot count it (cookie sessions)."""
    return None if any(value is None for value in values) else sum(v or 0 for v in values)


def merged_counts(counts: Sequence[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            total[key] = total.get(key, 0) + value
    return dict(sorted(total.items()))
