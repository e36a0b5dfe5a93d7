"""`Verdicts`: what was learnt from byte strings already checked, within a byte budget.

A session's record is read on every request and rewritten rarely, so the read path
checks the same bytes (checksums, signature, shape) again and again. A verdict depends
on the bytes alone, so it can be kept and looked up by the bytes themselves: equal bytes,
equal verdict; a single changed byte is a different key. Only verdicts of bytes that
passed every check are kept (damage is judged afresh each time, each with an exception
of its own).

Bounded by the total length of the byte strings kept, least recently used out first,
so a few large sessions cannot hold more memory than many small ones. Safe to share
between threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["Verdicts"]

_V = TypeVar("_V")


class Verdicts(Generic[_V]):
    """A least-recently-used map from byte strings to what was learnt from them, holding
    byte strings of at most `budget` bytes in all (each at most an eighth of it)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.largest = budget // 8
        self._entries: OrderedDict[bytes, _V] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, raw: bytes) -> _V | None:
        with self._lock:
            found = self._entries.get(raw)
            if found is not None:
                self._entries.move_to_end(raw)
            return found

    def put(self, raw: bytes, verdict: _V) -> None:
        if len(raw) > self.largest:
            return
        with self._lock:
            if raw in self._entries:
                return
            self._entries[raw] = verdict
            self._held += len(raw)
            while self._held > self.budget:
                dropped, _ = self._entries.popitem(last=False)
                self._held -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)
