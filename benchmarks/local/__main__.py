"""`python -m benchmarks.local`: run the in-process scenarios alone and print the Markdown.

`--output-dir DIR` also writes latest.md, latest.json and latest.png there (never
into benchmarks/results unless asked to).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import LOCAL_SCENARIOS, LocalParams

#: Seconds each scenario may take at most; a default run takes well under half of this.
BUDGET = {"kill-mid-write": 30.0, "inprocess-overhead": 20.0, "file-op-floor": 10.0}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer kills and rounds")
    parser.add_argument("--only", nargs="+", choices=sorted(LOCAL_SCENARIOS), metavar="SCENARIO")
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs per subject")
    parser.add_argument("--output-dir", type=Path, help="write latest.md/.json/.png here")
    args = parser.parse_args(argv)

    from ..checkout import Watch, recorded
    from ..harness import RESULTS_DIR, ROOT, machine_info
    from ..report import render_markdown, write_report

    watch = Watch(ROOT, ignore=[RESULTS_DIR, *([args.output_dir] if args.output_dir else [])])
    meta: dict[str, Any] = {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "quick": args.quick,
    }
    started = time.monotonic()
    sections = []
    for key in args.only or LOCAL_SCENARIOS:
        print(f"running {key} ...", file=sys.stderr)
        begun = time.monotonic()
        params = LocalParams(args.quick, begun + BUDGET[key], args.kills)
        sections.append(LOCAL_SCENARIOS[key](params))
        print(f"  {key}: {time.monotonic() - begun:.1f} s", file=sys.stderr)
    meta["duration_s"] = round(time.monotonic() - started, 1)
    meta["machine"] = {**meta["machine"], **recorded(watch.measured())}
    if args.output_dir:
        print(write_report(sections, args.output_dir, meta))
        print(f"wrote {args.output_dir}/latest.md, latest.json, latest.png", file=sys.stderr)
    else:
        print(render_markdown(sections, meta))
    print(f"local scenarios: {meta['duration_s']} s wall time", file=sys.stderr)
    watch.warn_again()
    return 0


if __name__ == "__main__":
    sys.exit(main())
