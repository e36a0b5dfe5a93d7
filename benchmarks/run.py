"""The command line: pick a scenario and subjects, run each subject, write the results.

    python -m benchmarks                       # every subject, 8 clients x 100 requests
    python -m benchmarks --quick               # 4 clients x 20 requests (smoke test)
    python -m benchmarks --subjects 'sg-wsgi-*' -c 4 -n 50 --workers 2
    python -m benchmarks --list

Each subject runs on a fresh server with an empty store directory, one after the other;
the Markdown table goes to stdout and `<output-dir>/latest.md`, the raw numbers to
`<output-dir>/latest.json`. The exit status is 1 when a run failed (server did not
start, a client crashed, time limit hit), never because of the numbers themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from .harness import (
    DEFAULT_WORKERS,
    ClientError,
    RunParams,
    Server,
    ServerError,
    Subject,
    count_exceptions,
    error_lines,
    first_traceback,
    machine_info,
)
from .scenarios import SCENARIOS, Scenario, ScenarioError, SubjectRun
from .subjects import all_subjects

__all__ = ["main"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
QUICK = {"clients": 4, "requests": 20}
FULL = {"clients": 8, "requests": 100}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run sessionguard's benchmarks against real servers on 127.0.0.1.",
    )
    parser.add_argument(
        "--scenario", default="same-session-burst", choices=sorted(SCENARIOS), help="%(default)s"
    )
    parser.add_argument(
        "-c", "--clients", type=_positive, help="concurrent client processes (default 8)"
    )
    parser.add_argument(
        "-n", "--requests", type=_positive, help="requests per client (default 100)"
    )
    parser.add_argument(
        "-w",
        "--workers",
        type=_positive,
        help="server worker processes for every subject (default: "
        + ", ".join(f"{kind} {n}" for kind, n in DEFAULT_WORKERS.items())
        + ")",
    )
    parser.add_argument(
        "-s",
        "--subjects",
        nargs="+",
        metavar="PATTERN",
        help="subject names or shell patterns, e.g. 'sg-wsgi-*' (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 clients x 20 requests unless -c/-n say otherwise",
    )
    parser.add_argument(
        "--time-limit",
        type=_seconds,
        default=120.0,
        help="hard limit in seconds on each subject's run (default %(default)s)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where latest.json and latest.md go (default benchmarks/results)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list subjects and scenarios, then exit"
    )
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def select(subjects: Sequence[Subject], patterns: Sequence[str] | None) -> list[Subject]:
    """The subjects matching any pattern, in registry order; unknown patterns are an error."""
    if not patterns:
        return list(subjects)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(s.name, pattern) for s in subjects):
            names = ", ".join(s.name for s in subjects)
            raise SystemExit(f"no subject matches {pattern!r}; known subjects: {names}")
    return [s for s in subjects if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]


def run_subject(
    scenario: Scenario[Any], subject: Subject, params: RunParams, workers: int
) -> SubjectRun[Any]:
    """Run one subject on its own server and store directory; both are gone afterwards."""
    missing = subject.missing()
    if missing:
        return SubjectRun(subject, workers, "skipped", error=f"not installed: {', '.join(missing)}")
    deadline = time.monotonic() + params.time_limit
    with tempfile.TemporaryDirectory(prefix=f"bench-{subject.name}-") as tmp:
        store_dir = Path(tmp, "store")
        store_dir.mkdir()
        server = Server(
            subject,
            workers=workers,
            store_dir=store_dir,
            log_path=Path(tmp, "server.log"),
            ready_timeout=min(30.0, params.time_limit),
        )
        result, error = None, None
        try:
            with server:
                result = scenario.run(server, subject, params, deadline)
        except (ServerError, ClientError, ScenarioError, httpx.HTTPError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if result is not None and result.partial:
            error = (
                f"{result.partial} (--time-limit {params.time_limit:g}); the numbers are partial"
            )
        log = server.log_text()  # complete: every server process is dead by now
    tracebacks, errors_logged = count_exceptions(log)
    return SubjectRun(
        subject,
        workers,
        "ok" if error is None else "failed",
        result=result,
        error=error,
        server_tracebacks=tracebacks,
        server_error_lines=errors_logged,
        first_traceback=first_traceback(log),
        first_error_lines=tuple(error_lines(log)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    subjects = all_subjects()
    if args.list:
        for subject in subjects:
            print(f"{subject.name:24} {subject.description}")
        print("\nscenarios: " + ", ".join(sorted(SCENARIOS)))
        return 0
    selected = select(subjects, args.subjects)
    defaults = QUICK if args.quick else FULL
    params = RunParams(
        clients=args.clients or defaults["clients"],
        requests=args.requests or defaults["requests"],
        time_limit=args.time_limit,
    )
    machine = machine_info()
    started_at = datetime.datetime.now(datetime.UTC)
    runs: list[SubjectRun[Any]] = []
    for subject in selected:
        workers = args.workers or DEFAULT_WORKERS[subject.server]
        print(f"running {subject.name} ({subject.server} x{workers}) ...", file=sys.stderr)
        run = run_subject(scenario, subject, params, workers)
        if run.error:
            print(f"  {run.status}: {run.error}", file=sys.stderr)
        runs.append(run)
    finished_at = datetime.datetime.now(datetime.UTC)

    markdown = _markdown(scenario, runs, params, machine, started_at)
    print(markdown)
    report = {
        "scenario": scenario.name,
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": (finished_at - started_at).total_seconds(),
        "parameters": {
            "clients": params.clients,
            "requests_per_client": params.requests,
            "workers": args.workers,
            "default_workers": dict(DEFAULT_WORKERS),
            "time_limit_s": params.time_limit,
            "quick": args.quick,
            "subjects": [subject.name for subject in selected],
            "client": scenario.client,
        },
        "machine": machine,
        "comparisons": scenario.compare(runs),
        "runs": [_run_json(run) for run in runs],
    }
    _write(args.output_dir / "latest.json", json.dumps(_finite(report), indent=2) + "\n")
    _write(args.output_dir / "latest.md", markdown)
    print(f"wrote {args.output_dir / 'latest.json'} and latest.md", file=sys.stderr)
    return 0 if all(run.status != "failed" for run in runs) else 1


def _markdown(
    scenario: Scenario[Any],
    runs: Sequence[SubjectRun[Any]],
    params: RunParams,
    machine: dict[str, object],
    started_at: datetime.datetime,
) -> str:
    load = machine.get("load_average")
    load_text = " ".join(f"{x:.2f}" for x in load) if isinstance(load, list) else "n/a"
    header = (
        f"## sessionguard benchmarks ({started_at:%Y-%m-%d %H:%M} UTC)\n\n"
        f"Python {machine['python']}, {machine['cpu_count']} CPUs, load average before "
        f"the run {load_text}, commit {machine['commit'] or 'unknown'}. "
        f"Clients: {scenario.client}. "
        "Every subject runs on its own fresh server and empty store.\n\n"
    )
    legend = "\n".join(f"- `{run.subject.name}`: {run.subject.description}" for run in runs)
    return header + scenario.render(runs, params) + "\nSubjects:\n\n" + legend + "\n"


def _run_json(run: SubjectRun[Any]) -> dict[str, Any]:
    subject = run.subject
    return {
        "subject": subject.name,
        "description": subject.description,
        "server": subject.server,
        "app": subject.app,
        "workers": run.workers,
        "settings": dict(subject.settings),
        "baseline": subject.baseline,
        "status": run.status,
        "error": run.error,
        "server_log": {
            "tracebacks": run.server_tracebacks,
            "error_lines": run.server_error_lines,
            "first_traceback": run.first_traceback,
            "first_error_lines": list(run.first_error_lines),
        },
        "result": dataclasses.asdict(run.result) if run.result is not None else None,
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN: turn it into null (an empty latency sample gives NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _write(path: Path, text: str) -> None:
    """Write atomically, so a reader never sees half a results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
