"""The scenarios: one module per traffic pattern, each exporting `SCENARIO`."""

from __future__ import annotations

from typing import Any

from . import same_session_burst
from .base import Scenario, ScenarioError, SubjectRun

__all__ = ["SCENARIOS", "Scenario", "ScenarioError", "SubjectRun"]

SCENARIOS: dict[str, Scenario[Any]] = {
    scenario.name: scenario for scenario in (same_session_burst.SCENARIO,)
}
