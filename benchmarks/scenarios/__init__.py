"""The server scenarios: one module per traffic pattern, each exporting `SCENARIO`.

They run in this order on one server per subject: the burst first, then many sessions.
"""

from __future__ import annotations

from typing import Any

from . import many_sessions, same_session_burst
from .base import Scenario, ScenarioError, SubjectRun

__all__ = ["SCENARIOS", "Scenario", "ScenarioError", "SubjectRun"]

SCENARIOS: dict[str, Scenario[Any]] = {
    scenario.name: scenario for scenario in (same_session_burst.SCENARIO, many_sessions.SCENARIO)
}
