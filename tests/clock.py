"""The one fake clock of the test suite: time moves only when the test moves it."""

from __future__ import annotations

__all__ = ["START", "FakeClock"]

#: A fixed moment (November 2023) for tests whose stores need no real time.
START = 1_700_000_000.0


class FakeClock:
    """A `clock=` for stores and `SessionCore.clock`: returns `now` until the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
