"""The unit tests' clock: a fake one at a fixed moment, moved only by the test."""

from __future__ import annotations

import pytest

from tests.clock import START, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)
