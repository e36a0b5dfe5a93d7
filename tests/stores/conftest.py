"""Fixtures shared by the store tests: a clock the test moves."""

from __future__ import annotations

import time

import pytest

from tests.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time (Redis expires keys by its own clock, so deadlines must be
    # real ones), rounded to a whole second so deadlines survive the round trip through
    # a file's nanosecond mtime exactly (where 0.1 records keep their deadline).
    return FakeClock(float(int(time.time())))
