"""What a scenario is, and what one subject's run under it produced."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from ..harness import RunParams, Server, Subject

__all__ = ["Result", "Scenario", "ScenarioError", "SubjectRun"]


class Result(Protocol):
    """What every scenario's result says about itself."""

    @property
    def partial(self) -> str | None:
        """Why the numbers cover less than the planned load (time limit hit), or `None`."""


_R = TypeVar("_R", bound=Result)


class ScenarioError(RuntimeError):
    """The server answered, but not in a way the scenario can measure (no cookie, bad JSON)."""


@dataclass(frozen=True)
class SubjectRun(Generic[_R]):
    """One subject under one scenario: its numbers, or why there are none."""

    subject: Subject
    workers: int
    status: Literal["ok", "failed", "skipped"]
    result: _R | None = None
    error: str | None = None
    #: Tracebacks, and lines logged at ERROR or CRITICAL, in the server's captured output.
    server_tracebacks: int = 0
    server_error_lines: int = 0
    first_traceback: str | None = None
    first_error_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario(Generic[_R]):
    """A traffic pattern.

    `run(server, subject, params, deadline)` drives one started server and returns the
    raw numbers. It must be done by `deadline` (a `time.monotonic()` value): stop sending
    early enough to collect the clients' numbers, and say so in the result's `partial`.
    `compare` relates the runs to each other (subject against its baseline) for the JSON
    results and the table; `render` makes the Markdown table.
    """

    name: str
    title: str
    #: How the load is generated, for the report (one sentence).
    client: str
    run: Callable[[Server, Subject, RunParams, float], _R]
    compare: Callable[[Sequence[SubjectRun[_R]]], Mapping[str, Mapping[str, object]]]
    render: Callable[[Sequence[SubjectRun[_R]], RunParams], str]
