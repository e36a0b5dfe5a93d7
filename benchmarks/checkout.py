"""Which commit a run measured, and whether the work tree was that commit.

Figures measured on a work tree with uncommitted changes belong to no commit: the
results then say "commit X (+ uncommitted changes)", and the command warns when it
starts and again when it ends. Changes to the results themselves (a previous run's
`latest.*`) do not count.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Checkout", "Watch", "checkout_of", "over_run", "recorded", "warn"]


@dataclass(frozen=True)
class Checkout:
    """HEAD's abbreviated hash, and whether the work tree or the index differed from it."""

    commit: str
    dirty: bool

    def describe(self) -> str:
        return f"commit {self.commit}" + (" (+ uncommitted changes)" if self.dirty else "")


def checkout_of(directory: Path, *, ignore: Sequence[Path] = ()) -> Checkout | None:
    """The checkout of the git work tree at `directory`; `None` outside one, before its
    first commit, or without git.

    Dirty means a changed, staged, deleted or untracked (not ignored) file under
    `directory`, except under the paths in `ignore`. A status git could not give counts
    as dirty: figures are only said to belong to a commit when that was checked.
    """
    commit = _git(directory, "rev-parse", "--short", "HEAD")
    if not commit:
        return None
    root = directory.resolve()
    excluded = [
        f":(exclude){relative}"
        for path in ignore
        if not (relative := os.path.relpath(path.resolve(), root)).startswith("..")
    ]
    # --no-optional-locks: a status run beside someone's work must not rewrite the index.
    status = _git(directory, "--no-optional-locks", "status", "--porcelain", "--", ".", *excluded)
    return Checkout(commit, dirty=status is None or status != "")


def over_run(start: Checkout | None, end: Checkout | None) -> Checkout | None:
    """What the figures of a run belong to, from the checkout at its start and at its end:
    the start's, counted as dirty if anything changed while it ran."""
    if start is None or start == end:
        return start
    return Checkout(start.commit, dirty=True)


def recorded(checkout: Checkout | None) -> dict[str, object]:
    """What the results keep of it (in `meta.machine`): `commit` and `dirty`, `None` when
    unknown."""
    return {
        "commit": checkout.commit if checkout else None,
        "dirty": checkout.dirty if checkout else None,
    }


def warn(checkout: Checkout | None, *, changed: bool = False) -> None:
    """Say on stderr when the figures do not belong to a commit (or to no known one)."""
    if checkout is None:
        print(
            "note: not a git work tree (or git is missing): the results record no commit",
            file=sys.stderr,
        )
    elif changed:
        print(
            "WARNING: the work tree changed while the benchmarks ran: the figures are "
            f"recorded as {checkout.describe()}, and belong to no single version of the code.",
            file=sys.stderr,
        )
    elif checkout.dirty:
        print(
            "WARNING: the work tree has uncommitted changes, so these figures are not "
            f"HEAD's: they are recorded as {checkout.describe()}. Commit the changes and "
            "run again for figures that belong to a commit.",
            file=sys.stderr,
        )


class Watch:
    """The checkout of a run: checked (and warned about) when the run starts, and again
    when its last figure is in."""

    def __init__(self, directory: Path, *, ignore: Sequence[Path] = ()) -> None:
        self.directory = directory
        self.ignore = tuple(ignore)
        self.start = checkout_of(directory, ignore=self.ignore)
        self._end: tuple[Checkout | None] | None = None
        warn(self.start)

    def measured(self) -> Checkout | None:
        """What the figures belong to (see `over_run`); checks the work tree again."""
        self._end = (checkout_of(self.directory, ignore=self.ignore),)
        return over_run(self.start, self._end[0])

    def warn_again(self) -> None:
        """The warning of the start, at the end, where it is seen after the report."""
        if self._end is None:
            self.measured()
        assert self._end is not None
        end = self._end[0]
        warn(over_run(self.start, end), changed=end != self.start)


def _git(directory: Path, *args: str) -> str | None:
    """git's stripped output, or `None` when it is missing or fails."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()
