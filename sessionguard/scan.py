"""What `sessionguard scan` reports about a store: counts, corruption by reason, sizes."""

from __future__ import annotations

import array
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .codec import Cipher
from .errors import CorruptReason, CorruptSessionError
from .ops import key_hash
from .record import decode_record
from .stores.base import StoredRecord

__all__ = ["UNUSUAL_FACTOR", "UNUSUAL_LISTED", "ScanReport", "corrupt_reason"]

#: A record this many times the median size or more (or less) is listed as unusual.
UNUSUAL_FACTOR = 10
#: At most this many unusually small and this many unusually large records are listed.
UNUSUAL_LISTED = 10


@dataclass
class ScanReport:
    """What `scan` found.

    Bytes decide corruption, the deadline decides expiry: a record that fails its checks
    is counted as corrupt whatever its deadline, and only intact records as live or
    expired.
    """

    live: int = 0
    expired: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CorruptReason, 0))
    sizes: array.array[int] = field(default_factory=lambda: array.array("q"))
    largest: list[tuple[int, str]] = field(default_factory=list)  # min-heap of (size, hash)
    smallest: list[tuple[int, str]] = field(default_factory=list)  # min-heap of (-size, hash)
    leftover_temp_files: list[str] = field(default_factory=list)  # key hashes
    _ordered: list[int] | None = None

    @property
    def corrupt(self) -> int:
        return sum(self.by_reason.values())

    def add(self, found: StoredRecord, reason: CorruptReason | None) -> None:
        if reason is not None:
            self.by_reason[reason] += 1
        elif found.expired:
            self.expired += 1
        else:
            self.live += 1
        size, name = len(found.record.payload), key_hash(found.key)
        self.sizes.append(size)
        self._ordered = None
        _keep_top(self.largest, (size, name))
        _keep_top(self.smallest, (-size, name))

    def percentile(self, p: float) -> int:
        """Nearest-rank percentile of the record sizes (0 when there are none)."""
        if not self.sizes:
            return 0
        if self._ordered is None:
            self._ordered = sorted(self.sizes)
        return self._ordered[max(0, math.ceil(p / 100 * len(self._ordered)) - 1)]

    def unusual(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(small, large): records under 1/10 or over 10x the median size, as (hash, size)."""
        median = self.percentile(50)
        large = [
            (n, s) for s, n in sorted(self.largest, reverse=True) if s > median * UNUSUAL_FACTOR
        ]
        small = [(n, -s) for s, n in sorted(self.smallest, reverse=True)]
        return [(n, s) for n, s in small if s * UNUSUAL_FACTOR < median], large

    def as_json(self, target: str) -> dict[str, Any]:
        """The report as plain data; `target` is shown as given (mask passwords first)."""
        small, large = self.unusual()
        return {
            "target": target,
            "records": len(self.sizes),
            "live": self.live,
            "expired": self.expired,
            "corrupt": self.corrupt,
            "corrupt_by_reason": {str(reason): n for reason, n in self.by_reason.items()},
            "sizes": {
                "p50": self.percentile(50),
                "p99": self.percentile(99),
                "max": max(self.sizes, default=0),
            },
            "unusual": {
                "small": [{"session": n, "bytes": s} for n, s in small],
                "large": [{"session": n, "bytes": s} for n, s in large],
            },
            "leftover_temp_files": len(self.leftover_temp_files),
        }

    def as_text(self, target: str) -> str:
        small, large = self.unusual()
        reasons = ", ".join(f"{r} {n:,}" for r, n in self.by_reason.items() if n)
        lines = [
            f"{target}: {len(self.sizes):,} records",
            f"  live        {self.live:>9,}",
            f"  expired     {self.expired:>9,}"
            + ("  (purge removes them)" if self.expired else ""),
            f"  corrupt     {self.corrupt:>9,}" + (f"  ({reasons})" if reasons else ""),
            f"  sizes       p50 {_bytes(self.percentile(50))}, p99 {_bytes(self.percentile(99))}, "
            f"max {_bytes(max(self.sizes, default=0))}",
        ]
        for label, listed in (("large", large), ("small", small)):
            if listed:
                shown = ", ".join(f"{n} ({_bytes(s)})" for n, s in listed)
                than = "over 10x" if label == "large" else "under 1/10 of"
                lines.append(f"  {label:<11} {len(listed)} {than} the median: {shown}")
        if self.leftover_temp_files:
            count = len(self.leftover_temp_files)
            lines.append(
                f"  temp files  {count:>9,}  (left by interrupted writes; purge removes them)"
            )
        return "\n".join(lines)


def _keep_top(heap: list[tuple[int, str]], item: tuple[int, str]) -> None:
    if len(heap) < UNUSUAL_LISTED:
        heapq.heappush(heap, item)
    else:
        heapq.heappushpop(heap, item)


def _bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


def corrupt_reason(
    found: StoredRecord, keys: Sequence[bytes] | None = None, cipher: Cipher | None = None
) -> CorruptReason | None:
    """Why the record does not decode, or `None` if it does (never unpickles).

    With `keys` (derived from the app's secret), a record whose signature matches none of
    them is corrupt too (`bad_signature`); without, only integrity is checked. An
    encrypted record is read with `cipher` (`unknown_key` if it has not the record's
    key); without a cipher its integrity is all that is checked, so that a tool run
    without the encryption keys never calls the whole store corrupt.
    """
    try:
        decode_record(found.record, keys=keys, cipher=cipher)
    except CorruptSessionError as exc:
        if exc.reason is CorruptReason.UNKNOWN_KEY and cipher is None:
            return None  # intact, and unreadable without the keys: as it should be
        return exc.reason
    return None
