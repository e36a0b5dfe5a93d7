"""The defaults benchmarks/README.md states for `python -m benchmarks`, as literals."""

from __future__ import annotations

from benchmarks.harness import DEFAULT_WORKERS, ROOT
from benchmarks.run import FULL, LOCAL_NAMES, QUICK, parse_args
from benchmarks.scenarios import SCENARIOS


def test_the_flags_table_of_the_benchmarks_readme() -> None:
    args = parse_args([])

    assert args.all is False and args.quick is False
    assert args.subjects is None and args.only is None  # the default set; "all five"
    assert [*SCENARIOS, *LOCAL_NAMES] == [
        "same-session-burst",
        "many-sessions",
        "kill-mid-write",
        "inprocess-overhead",
        "file-op-floor",
    ]
    assert FULL == {"clients": 8, "requests": 100}  # -c 8, -n 100
    assert QUICK == {"clients": 4, "requests": 20}  # --quick: 4 clients x 20 requests
    assert DEFAULT_WORKERS == {"gunicorn-sync": 4, "uvicorn": 2}
    assert args.workers is None and args.clients is None and args.requests is None
    assert args.rounds == 1
    assert args.kills == 200
    assert args.time_limit == 60.0
    assert args.output_dir == ROOT / "benchmarks" / "results"
