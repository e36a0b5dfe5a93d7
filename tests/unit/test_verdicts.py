"""`Verdicts`: kept by the bytes themselves, within a byte budget, least recently used out."""

from __future__ import annotations

import threading

from sessionguard.verdicts import Verdicts


def test_keeps_byte_strings_within_its_budget_dropping_the_least_recently_used() -> None:
    kept: Verdicts[str] = Verdicts(budget=800)  # byte strings of at most 100 bytes
    a, b, c = b"a" * 100, b"b" * 100, b"c" * 100
    for raw in (a, b, c):
        kept.put(raw, raw[:1].decode())
    assert kept.get(a) == "a"  # now the most recently used
    for n in range(6):
        kept.put(bytes([n]) * 100, str(n))  # 900 bytes offered in all: one must go
    assert kept.get(b) is None
    assert kept.get(a) == "a" and kept.get(c) == "c"
    assert len(kept) == 8


def test_a_byte_string_over_an_eighth_of_the_budget_is_never_kept() -> None:
    kept: Verdicts[int] = Verdicts(budget=800)
    kept.put(b"x" * 101, 1)
    assert kept.get(b"x" * 101) is None and len(kept) == 0


def test_equal_bytes_find_the_verdict_and_other_bytes_do_not() -> None:
    kept: Verdicts[int] = Verdicts(budget=1 << 10)
    kept.put(b"record", 1)
    assert kept.get(b"rec" + b"ord") == 1
    assert kept.get(b"recorD") is None


def test_threads_sharing_it_never_break_it() -> None:
    kept: Verdicts[int] = Verdicts(budget=4096)

    def work(offset: int) -> None:
        for n in range(2000):
            raw = (offset * 10_000 + n).to_bytes(8, "big") * 8
            kept.put(raw, n)
            kept.get(raw)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kept) == 4096 // 64
