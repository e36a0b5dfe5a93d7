"""The command line: run the server scenarios over the subjects, then the local ones; report.

    python -m benchmarks                       # `make bench`: default subjects, every scenario
    python -m benchmarks --all                 # `make bench-all`: + Redis and PostgreSQL
    python -m benchmarks --quick               # smoke test: 4 clients x 20 requests
    python -m benchmarks --only same-session-burst -s 'sg-wsgi-*' -c 4 -n 50
    python -m benchmarks --list

Each subject gets one fresh server (and empty store) on which the server scenarios run
one after the other: the same-session burst, then many sessions. With `--rounds R` the
whole list of subjects is run R times, interleaved, and the median round is reported.
Then the local scenarios (kill mid-write, in-process overhead, file-op floor) run in
this process. Every scenario becomes a `Section`; `benchmarks.report` writes them to
`latest.md`, `latest.json` and `latest.png` and the Markdown is printed.

The exit status is 1 when a run failed (server did not start, a client crashed, a time
limit hit, a local scenario raised), never because of what the numbers are.

The results record the commit they were measured on and whether the work tree had
uncommitted changes (`benchmarks.checkout`). With such changes the figures are not
HEAD's: the command warns when it starts and again when it ends, and the report says
"commit X (+ uncommitted changes)".
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .checkout import Watch, recorded
from .harness import (
    DEFAULT_WORKERS,
    RESULTS_DIR,
    ROOT,
    SERVICE_URL_ENV,
    ClientError,
    ClientPool,
    RunParams,
    Server,
    ServerError,
    Subject,
    count_exceptions,
    error_lines,
    first_traceback,
    machine_info,
    warm_up,
)
from .report import write_report
from .scenarios import SCENARIOS, Scenario, ScenarioError, SubjectRun
from .section import Section
from .subjects import all_subjects

__all__ = ["main"]

DEFAULT_OUTPUT = RESULTS_DIR
QUICK = {"clients": 4, "requests": 20}
FULL = {"clients": 8, "requests": 100}
#: The local scenarios, in the order they run; `benchmarks.local` implements them.
LOCAL_NAMES = ("kill-mid-write", "inprocess-overhead", "file-op-floor")
#: Hard limit on each local scenario, in seconds (they aim at far less).
LOCAL_TIME_LIMIT = {"quick": 45.0, "full": 90.0}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run sessionguard's benchmarks against its peers on 127.0.0.1.",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="also the Redis and PostgreSQL subjects (starts redis-server and PostgreSQL)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="4 clients x 20 requests unless -c/-n say otherwise"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="SCENARIO",
        choices=[*SCENARIOS, *LOCAL_NAMES],
        help="run only these scenarios: " + ", ".join([*SCENARIOS, *LOCAL_NAMES]),
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
        help="subject names or shell patterns, e.g. 'sg-wsgi-*' (default: the default set, "
        "or every subject with --all)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=1,
        help="run every subject R times, interleaved, and report the median (default 1)",
    )
    parser.add_argument(
        "--kills",
        type=_positive,
        default=200,
        help="SIGKILLs per subject in the kill-mid-write scenario (default %(default)s)",
    )
    parser.add_argument(
        "--time-limit",
        type=_seconds,
        default=60.0,
        help="hard limit in seconds on each subject's run of one server scenario "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where latest.md, latest.json and latest.png go (default benchmarks/results)",
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


def select(
    subjects: Sequence[Subject], patterns: Sequence[str] | None, *, everything: bool
) -> list[Subject]:
    """The subjects matching any pattern, in registry order; unknown patterns are an error.

    Without patterns: the default set, or every subject when `everything` (`--all`).
    """
    if not patterns:
        return [s for s in subjects if everything or s.default]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(s.name, pattern) for s in subjects):
            names = ", ".join(s.name for s in subjects)
            raise SystemExit(f"no subject matches {pattern!r}; known subjects: {names}")
    return [s for s in subjects if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]


# -- Redis and PostgreSQL -----------------------------------------------------------------


@contextlib.contextmanager
def services(names: set[str]) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """Start the servers in `names` on free loopback ports, and stop them on the way out.

    Yields the environment that carries their URLs to the subjects, and for each server
    that could not be started, why. The servers come from `tests.servers`, which the
    test suite uses too.
    """
    env: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if names:
            # Imported only when needed: the default run starts no server.
            from tests.servers import PostgresServer, RedisServer, postgres_bindir, stop
        if "redis" in names:
            binary = shutil.which("redis-server")
            if binary is None:
                unavailable["redis"] = (
                    "redis-server is not installed (apt-get install redis-server)"
                )
            else:
                directory = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-redis-"))
                )
                redis = RedisServer(binary, directory)
                stack.callback(lambda: stop(redis.process))
                try:
                    redis.start()
                    env[SERVICE_URL_ENV["redis"]] = redis.url
                except (OSError, RuntimeError) as exc:
                    unavailable["redis"] = f"redis-server did not start: {exc}"
        if "postgres" in names:
            bindir = postgres_bindir()
            if bindir is None or shutil.which("psql") is None:
                unavailable["postgres"] = "PostgreSQL is not installed (apt-get install postgresql)"
            else:
                # Not under a private temporary directory: the server runs as `postgres`.
                directory = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
                stack.callback(shutil.rmtree, directory, ignore_errors=True)
                postgres = PostgresServer(bindir, directory)
                stack.callback(lambda: stop(postgres.process, signal.SIGINT))
                try:
                    postgres.init()
                    postgres.start()
                    env[SERVICE_URL_ENV["postgres"]] = postgres.url
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    unavailable["postgres"] = f"PostgreSQL did not start: {exc}"
        yield env, unavailable


# -- one subject on one server ------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What every subject's run shares."""

    scenarios: Sequence[Scenario[Any]]
    params: RunParams
    workers: int | None
    pool: ClientPool
    env: Mapping[str, str]
    unavailable: Mapping[str, str]


def run_subject(subject: Subject, setup: Setup) -> dict[str, SubjectRun[Any]]:
    """Start the subject's server, run each scenario on it, stop it; one run per scenario."""
    workers = setup.workers or DEFAULT_WORKERS[subject.server]
    names = [scenario.name for scenario in setup.scenarios]
    missing = subject.missing()
    down = [setup.unavailable[name] for name in subject.services if name in setup.unavailable]
    if missing or down:
        why = f"not installed: {', '.join(missing)}" if missing else "; ".join(down)
        return {name: SubjectRun(subject, workers, "skipped", error=why) for name in names}
    params = setup.params
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    marks: list[int] = []  # where each scenario's part of the server log ends
    with tempfile.TemporaryDirectory(prefix=f"bench-{subject.name}-") as tmp:
        store_dir = Path(tmp, "store")
        store_dir.mkdir()
        server = Server(
            subject,
            workers=workers,
            store_dir=store_dir,
            log_path=Path(tmp, "server.log"),
            env=setup.env,
            ready_timeout=min(30.0, params.time_limit),
        )
        try:
            with server:
                warm_up(
                    server.base_url,
                    subject.cookie_name,
                    workers,
                    time.monotonic() + params.time_limit,
                )
                for scenario in setup.scenarios:
                    deadline = time.monotonic() + params.time_limit
                    try:
                        results[scenario.name] = scenario.run(
                            server, subject, params, deadline, setup.pool
                        )
                    except (ClientError, ScenarioError, httpx.HTTPError) as exc:
                        errors[scenario.name] = f"{type(exc).__name__}: {exc}"
                    marks.append(len(server.log_text()))
        except (ServerError, httpx.HTTPError) as exc:
            for name in names[len(marks) :]:
                errors[name] = f"{type(exc).__name__}: {exc}"
        log = server.log_text()  # complete: every server process is dead by now
    # Each scenario's part of the server log: start-up goes with the first, shutdown with
    # the last one that ran.
    bounds = [0, *marks[:-1], len(log)]
    runs: dict[str, SubjectRun[Any]] = {}
    for index, name in enumerate(names):
        piece = log[bounds[index] : bounds[index + 1]] if index + 1 < len(bounds) else ""
        result = results.get(name)
        error = errors.get(name)
        if error is None and result is not None and result.partial:
            error = (
                f"{result.partial} (--time-limit {params.time_limit:g}); the numbers are partial"
            )
        tracebacks, errors_logged = count_exceptions(piece)
        runs[name] = SubjectRun(
            subject,
            workers,
            "ok" if error is None else "failed",
            result=result,
            error=error,
            server_tracebacks=tracebacks,
            server_error_lines=errors_logged,
            first_traceback=first_traceback(piece),
            first_error_lines=tuple(error_lines(piece)),
            round_rates=(result.requests_per_s,) if result is not None else (),
        )
    return runs


def combine_rounds(scenario: Scenario[Any], rounds: Sequence[SubjectRun[Any]]) -> SubjectRun[Any]:
    """One subject's rounds under one scenario as one run (see `Scenario.combine`)."""
    if len(rounds) == 1:
        return rounds[0]
    first = rounds[0]
    results = [run.result for run in rounds if run.result is not None]
    failed = [run for run in rounds if run.status != "ok"]
    error = None
    if failed:
        error = f"{len(failed)} of {len(rounds)} rounds {failed[0].status}: {failed[0].error}"
    return SubjectRun(
        first.subject,
        first.workers,
        failed[0].status if failed else "ok",
        result=scenario.combine(results) if results else None,
        error=error,
        server_tracebacks=sum(run.server_tracebacks for run in rounds),
        server_error_lines=sum(run.server_error_lines for run in rounds),
        first_traceback=next((r.first_traceback for r in rounds if r.first_traceback), None),
        first_error_lines=next((r.first_error_lines for r in rounds if r.first_error_lines), ()),
        round_rates=tuple(rate for run in rounds for rate in run.round_rates),
    )


def run_servers(subjects: Sequence[Subject], setup: Setup, rounds: int) -> list[Section]:
    """Every subject under every server scenario, `rounds` times; one Section per scenario."""
    collected: dict[str, dict[str, list[SubjectRun[Any]]]] = {
        scenario.name: {subject.name: [] for subject in subjects} for scenario in setup.scenarios
    }
    for round_index in range(rounds):
        for subject in subjects:
            workers = setup.workers or DEFAULT_WORKERS[subject.server]
            label = f" (round {round_index + 1}/{rounds})" if rounds > 1 else ""
            print(
                f"running {subject.name} ({subject.server} x{workers}){label} ...", file=sys.stderr
            )
            started = time.monotonic()
            for name, run in run_subject(subject, setup).items():
                collected[name][subject.name].append(run)
                if run.error:
                    print(f"  {name}: {run.status}: {run.error}", file=sys.stderr)
            print(f"  {time.monotonic() - started:.1f}s", file=sys.stderr)
    return [
        scenario.section(
            [combine_rounds(scenario, collected[scenario.name][s.name]) for s in subjects],
            setup.params,
        )
        for scenario in setup.scenarios
    ]


# -- local scenarios and the report -------------------------------------------------------


def run_local(
    names: Sequence[str], quick: bool, kills: int
) -> tuple[list[Section], dict[str, float], bool]:
    """The local scenarios from `benchmarks.local`: sections, wall times, whether all ran."""
    if not names:
        return [], {}, True
    try:
        from .local import LOCAL_SCENARIOS, LocalParams
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks.local":
            raise
        note = "benchmarks/local is not there: the local scenarios were not run."
        return [Section("local", "Local scenarios", note + "\n", {"skipped": note})], {}, True
    sections: list[Section] = []
    times: dict[str, float] = {}
    ok = True
    limit = LOCAL_TIME_LIMIT["quick" if quick else "full"]
    for name in names:
        print(f"running {name} ...", file=sys.stderr)
        started = time.monotonic()
        try:
            section = LOCAL_SCENARIOS[name](
                LocalParams(quick=quick, deadline=started + limit, kills=kills)
            )
        except Exception as exc:  # a broken scenario must not cost the others' numbers
            ok = False
            text = f"{type(exc).__name__}: {exc}"
            print(f"  failed: {text}", file=sys.stderr)
            section = Section(name, name, f"**Failed**: {text}\n", {"error": text})
        times[name] = time.monotonic() - started
        print(f"  {times[name]:.1f}s", file=sys.stderr)
        sections.append(section)
    return sections, times, ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    subjects = all_subjects()
    if args.list:
        for subject in subjects:
            where = "default" if subject.default else "--all"
            print(f"{subject.name:22} {where:8} {subject.description}")
        print("\nscenarios: " + ", ".join([*SCENARIOS, *LOCAL_NAMES]))
        return 0
    only = set(args.only or [*SCENARIOS, *LOCAL_NAMES])
    scenarios = [scenario for name, scenario in SCENARIOS.items() if name in only]
    local_names = [name for name in LOCAL_NAMES if name in only]
    selected = select(subjects, args.subjects, everything=args.all) if scenarios else []
    defaults = QUICK if args.quick else FULL
    params = RunParams(
        clients=args.clients or defaults["clients"],
        requests=args.requests or defaults["requests"],
        time_limit=args.time_limit,
    )
    # Warns now and at the end if the figures will not be HEAD's; earlier results do not count.
    watch = Watch(ROOT, ignore=[RESULTS_DIR, args.output_dir])
    machine = machine_info()
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    sections: list[Section] = []
    wall_times: dict[str, float] = {}
    if selected:
        needed = {name for subject in selected for name in subject.services}
        with services(needed) as (env, unavailable), ClientPool(params.clients) as pool:
            for name, why in unavailable.items():
                print(f"{name}: {why}; its subjects are skipped", file=sys.stderr)
            setup = Setup(scenarios, params, args.workers, pool, env, unavailable)
            sections += run_servers(selected, setup, args.rounds)
        wall_times["server scenarios"] = time.monotonic() - started
    local_sections, local_times, local_ok = run_local(local_names, args.quick, args.kills)
    sections += local_sections
    wall_times.update(local_times)
    meta = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "quick": args.quick,
        "parameters": {
            "clients": params.clients,
            "requests_per_client": params.requests,
            "workers": args.workers or dict(DEFAULT_WORKERS),
            "rounds": args.rounds,
            "all": args.all,
            "time_limit_s": params.time_limit,
            "subjects": [subject.name for subject in selected],
            "wall_times_s": {name: round(seconds, 1) for name, seconds in wall_times.items()},
        },
        "machine": {**machine, **recorded(watch.measured())},
    }
    markdown = write_report(sections, args.output_dir, meta)
    print(markdown)
    print(
        f"wrote {args.output_dir}/latest.md, latest.json and latest.png "
        f"in {meta['duration_s']:.0f}s ("
        + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in wall_times.items())
        + ")",
        file=sys.stderr,
    )
    watch.warn_again()
    failed = any(
        run.get("status") == "failed"
        for section in sections
        for run in section.data.get("runs", ())
        if isinstance(run, Mapping)
    )
    return 0 if local_ok and not failed else 1
