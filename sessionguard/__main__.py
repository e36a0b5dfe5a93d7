"""`python -m sessionguard`: the same as the `sessionguard` console script."""

from __future__ import annotations

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
