"""Snapshots of a directory tree, to check what a store or an app left on disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["Tree", "temp_files", "tree"]

#: Every path under a root, relative to it, mapped to the file's bytes (`None` for
#: anything that is not a regular file: a directory, a symbolic link, a FIFO).
Tree = dict[str, bytes | None]


def tree(root: str | os.PathLike[str]) -> Tree:
    """Every name under `root`, hidden ones included; links are listed, never followed."""
    found: Tree = {}
    for parent, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(parent, name)
            regular = stat.S_ISREG(os.lstat(path).st_mode)
            found[os.path.relpath(path, root)] = path.read_bytes() if regular else None
    return found


def temp_files(root: str | os.PathLike[str]) -> list[str]:
    """The `*.tmp` files anywhere under `root`, as relative paths."""
    return sorted(path for path, body in tree(root).items() if path.endswith(".tmp"))
