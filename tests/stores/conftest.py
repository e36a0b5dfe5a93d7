"""Fixtures shared by the store tests: a clock the test moves, and views of a file tree.

With `--import-mode=importlib` test modules cannot import this file, so helpers are
handed out as fixtures; test modules import `FakeClock` for type checking only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

Tree = dict[str, bytes | None]


class FakeClock:
    """A `clock=` for stores: time moves only when the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time (Redis expires keys by its own clock, so deadlines must be
    # real ones), rounded to a whole second so deadlines survive the round trip through
    # a file's nanosecond mtime exactly (where 0.1 records keep their deadline).
    return FakeClock(float(int(time.time())))


def _tree(root: Path) -> Tree:
    found: Tree = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(parent, name), root)] = None
        for name in files:
            path = os.path.join(parent, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def _temp_files(root: Path) -> list[str]:
    return sorted(path for path, body in _tree(root).items() if path.endswith(".tmp"))


@pytest.fixture
def tree() -> Callable[[Path], Tree]:
    """Every path under a root, hidden ones included, mapped to its bytes (`None` for a dir)."""
    return _tree


@pytest.fixture
def temp_files() -> Callable[[Path], list[str]]:
    """The `*.tmp` files anywhere under a root, as relative paths."""
    return _temp_files
