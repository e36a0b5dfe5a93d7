"""The in-process scenarios: kill mid-write, in-process overhead, file-op floor.

They need no server. Each is a function of `LocalParams` that returns a `Section`;
`benchmarks.run` runs them after the server scenarios, and `python -m benchmarks.local`
runs them alone. The scenario modules import their libraries only when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..section import Section

__all__ = ["LOCAL_SCENARIOS", "LocalParams"]


@dataclass(frozen=True)
class LocalParams:
    """`quick`: a smoke-test run; `deadline`: a `time.monotonic()` value to finish by."""

    quick: bool
    deadline: float
    kills: int = 200


def _kill_mid_write(params: LocalParams) -> Section:
    from . import killwrite

    return killwrite.run(params.quick, params.deadline, params.kills)


def _inprocess_overhead(params: LocalParams) -> Section:
    from . import overhead

    return overhead.run(params.quick, params.deadline)


def _file_op_floor(params: LocalParams) -> Section:
    from . import floor

    return floor.run(params.quick, params.deadline)


LOCAL_SCENARIOS: dict[str, Callable[[LocalParams], Section]] = {
    "kill-mid-write": _kill_mid_write,
    "inprocess-overhead": _inprocess_overhead,
    "file-op-floor": _file_op_floor,
}
