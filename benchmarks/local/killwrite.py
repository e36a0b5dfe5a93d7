"""Kill mid-write: SIGKILL a process that is saving a session, then load that session.

For each file-based session store, a *driver* process (a fresh interpreter, one per
subject, at most two at a time) saves one session once, then `kills` times: forks a
writer child that saves the same session in a loop through the store's own API (each
save 1-100 KB, a different size every time, so that one save spans several system
calls), waits for the child to say it is ready, sleeps a random 0-10 ms, SIGKILLs it,
and loads the session through the same API. Each load is counted as ok, failed (it
raised), empty (no session, or one without our data) or bad (data of the wrong length),
and the temp files the store left in its directory are counted.

The driver is its own interpreter so that `os.fork` happens in a process with no other
threads, whatever the process running the benchmarks has started.

Run one driver by hand: `python -m benchmarks.local.killwrite sg-file --kills 50`.
"""

from __future__ import annotations

import abc
import argparse
import base64
import collections
import json
import os
import pickle
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..harness import ROOT, remaining
from ..section import Bar, Section, Target
from .measure import markdown_table

__all__ = ["SUBJECTS", "run"]

#: Each writer child stops by itself after this long or this many saves, if never killed.
CHILD_SECONDS = 5.0
CHILD_MAX_SAVES = 100_000
#: The kill comes a uniformly random 0..MAX_KILL_DELAY seconds after the child is ready.
MAX_KILL_DELAY = 0.010
#: Drivers running at once (the machine has 2 cores; the children use one each).
PARALLEL = 2
SIZES = (1_000, 100_000)
QUICK_KILLS = 40


class KillSubject(abc.ABC):
    """One store under test, saving and loading one session in `directory`."""

    name: ClassVar[str]
    label: ClassVar[str]
    is_sessionguard: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()
    #: How the store names its temp files, for the table's notes.
    temp_files: ClassVar[str]

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @abc.abstractmethod
    def save(self, data: dict[str, Any]) -> None:
        """Save `data` as the session, as the library does at the end of a request."""

    @abc.abstractmethod
    def load(self) -> Mapping[str, Any] | None:
        """Load the session afresh, as the library does at the start of a request."""

    @abc.abstractmethod
    def is_temp(self, name: str) -> bool:
        """Whether a file name in the store's directory is one of its temp files."""


class SessionguardFile(KillSubject):
    name = "sg-file"
    label = "sessionguard FileStore(durable=False)"
    is_sessionguard = True
    temp_files = "`.<key>.tmp` beside the record, one per key, reused by the next write"
    durable = False

    def __init__(self, directory: str) -> None:
        from sessionguard.cookie import new_id
        from sessionguard.stores.file import FileStore

        super().__init__(directory)
        self.store = FileStore(directory, durable=self.durable)
        self.key = new_id()
        self.created_at = time.time()

    def save(self, data: dict[str, Any]) -> None:
        from sessionguard.codec import Envelope, encode

        payload = encode(Envelope(data, self.created_at))
        self.store.save(self.key, payload, expires_at=time.time() + 3600)

    def load(self) -> Mapping[str, Any] | None:
        from sessionguard.codec import decode

        record = self.store.load(self.key)
        return None if record is None else decode(record.payload).data

    def is_temp(self, name: str) -> bool:
        return name.startswith(".") and name.endswith(".tmp")


class SessionguardDurable(SessionguardFile):
    name = "sg-durable"
    label = "sessionguard FileStore(durable=True)"
    durable = True


class FlaskSessionFilesystem(KillSubject):
    """What Flask-Session 0.8's `SESSION_TYPE="filesystem"` does with a session."""

    name = "flask-session-fs"
    label = "Flask-Session 0.8 filesystem (cachelib FileSystemCache)"
    requires = ("flask_session", "cachelib")
    temp_files = "`tmp*.__wz_cache` from `mkstemp`, a new name each write"

    def __init__(self, directory: str) -> None:
        from cachelib.file import FileSystemCache

        super().__init__(directory)
        # Flask-Session 0.8's defaults: threshold 500, mode 0600, key prefix "session:".
        self.cache = FileSystemCache(directory, threshold=500, mode=0o600)
        self.key = "session:" + base64.urlsafe_b64encode(os.urandom(24)).decode()

    def save(self, data: dict[str, Any]) -> None:
        self.cache.set(self.key, data, timeout=3600)

    def load(self) -> Mapping[str, Any] | None:
        loaded: Mapping[str, Any] | None = self.cache.get(self.key)
        return loaded

    def is_temp(self, name: str) -> bool:
        return name.endswith(".__wz_cache")


class BeakerFile(KillSubject):
    name = "beaker-file"
    label = 'Beaker Session(type="file")'
    requires = ("beaker",)
    temp_files = "`<id>.cache.temp` beside the record, reused by the next write"

    def __init__(self, directory: str) -> None:
        from beaker.session import Session  # type: ignore[import-untyped]

        super().__init__(directory)
        self.session_class: Any = Session
        self.session = Session({}, type="file", data_dir=directory)

    def save(self, data: dict[str, Any]) -> None:
        self.session.update(data)
        self.session.save()

    def load(self) -> Mapping[str, Any] | None:
        loaded = self.session_class({}, id=self.session.id, type="file", data_dir=self.directory)
        return None if loaded.is_new else dict(loaded)

    def is_temp(self, name: str) -> bool:
        return name.endswith(".temp")


class DjangoFile(KillSubject):
    name = "django-file"
    label = "Django 5.2 file session backend"
    requires = ("django",)
    temp_files = "`sessionid<key>_out_*` from `mkstemp`, a new name each write"

    def __init__(self, directory: str) -> None:
        from django.conf import settings

        if not settings.configured:
            settings.configure(SECRET_KEY="bench-" + "k" * 50, SESSION_FILE_PATH=directory)
        from django.contrib.sessions.backends.file import (
            SessionStore,
        )

        super().__init__(directory)
        # The backend caches SESSION_FILE_PATH on the class; a subclass per directory
        # keeps that right even if settings were configured elsewhere first.
        self.store_class: Any = type("SessionStore", (SessionStore,), {"_storage_path": directory})
        self.store = self.store_class()

    def save(self, data: dict[str, Any]) -> None:
        self.store.update(data)
        self.store.save()

    def load(self) -> Mapping[str, Any] | None:
        loaded: dict[str, Any] = self.store_class(self.store.session_key).load()
        return loaded

    def is_temp(self, name: str) -> bool:
        return "_out_" in name


class NaivePickle(KillSubject):
    """The classic way, and the bug the project exists for: truncate, then write."""

    name = "naive-pickle"
    label = 'naive pickle file (open(path, "wb") + pickle.dump)'
    temp_files = "none: it writes the record in place"

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.path = os.path.join(directory, "session.pkl")

    def save(self, data: dict[str, Any]) -> None:
        with open(self.path, "wb") as file:
            pickle.dump(data, file, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self) -> Mapping[str, Any] | None:
        try:
            with open(self.path, "rb") as file:
                loaded: Mapping[str, Any] = pickle.load(file)
        except FileNotFoundError:
            return None
        return loaded

    def is_temp(self, name: str) -> bool:
        return False


SUBJECTS: dict[str, type[KillSubject]] = {
    subject.name: subject
    for subject in (
        SessionguardFile,
        SessionguardDurable,
        FlaskSessionFilesystem,
        BeakerFile,
        DjangoFile,
        NaivePickle,
    )
}


# -- the driver: one subject, in its own interpreter ---------------------------------


def _payloads(rng: random.Random) -> list[dict[str, Any]]:
    # Random base64 text: incompressible (Django zlib-compresses) and valid in JSON.
    text = base64.b64encode(os.urandom(SIZES[1])).decode()
    sizes = [rng.randint(*SIZES) for _ in range(97)]
    return [{"n": i, "size": size, "blob": text[:size]} for i, size in enumerate(sizes)]


def _classify(subject: KillSubject) -> tuple[str, str | None]:
    try:
        data = subject.load()
    except Exception as exc:  # any error is the outcome being counted
        return "failed", f"{type(exc).__module__}.{type(exc).__qualname__}"
    if not data or "blob" not in data:
        return "empty", None
    if not isinstance(data["blob"], str) or len(data["blob"]) != data.get("size"):
        return "bad", None
    return "ok", None


def _count_temp(subject: KillSubject) -> int:
    return sum(
        subject.is_temp(name) for _, _, names in os.walk(subject.directory) for name in names
    )


def _writer(
    subject: KillSubject, payloads: Sequence[dict[str, Any]], start: int, ready: int
) -> None:
    os.write(ready, b"r")
    os.close(ready)
    stop = time.monotonic() + CHILD_SECONDS
    for i in range(start, start + CHILD_MAX_SAVES):
        subject.save(payloads[i % len(payloads)])
        if time.monotonic() > stop:
            break


def _spawn_writer(subject: KillSubject, payloads: Sequence[dict[str, Any]], start: int) -> int:
    """Fork a writer; return its pid once it is ready, or -pid if it never said so."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write until killed, never return into the driver's code
        code = 0
        try:
            os.close(read_end)
            _writer(subject, payloads, start, write_end)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        readable, _, _ = select.select([read_end], [], [], 5.0)
        ready = bool(readable) and os.read(read_end, 1) == b"r"
    finally:
        os.close(read_end)
    return pid if ready else -pid


def drive(name: str, directory: str, kills: int, seconds: float, seed: int) -> dict[str, Any]:
    """Run the kill loop for one subject; return its counts (JSON-able)."""
    rng = random.Random(seed)
    subject = SUBJECTS[name](directory)
    payloads = _payloads(rng)
    subject.save(payloads[0])
    if _classify(subject)[0] != "ok":
        raise RuntimeError(f"{name}: a session saved without interruption did not load back")
    outcomes: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    temp_max = done = not_ready = exited_early = 0
    started = time.monotonic()
    stop = started + seconds
    for _ in range(kills):
        if time.monotonic() >= stop:
            break
        pid = _spawn_writer(subject, payloads, rng.randrange(len(payloads)))
        if pid > 0:
            time.sleep(rng.uniform(0, MAX_KILL_DELAY))
        try:
            os.kill(abs(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(abs(pid), 0)
        if pid < 0:
            not_ready += 1
            continue
        if not os.WIFSIGNALED(status):
            exited_early += 1  # finished or crashed before the kill: not a kill mid-write
            continue
        done += 1
        outcome, error = _classify(subject)
        outcomes[outcome] += 1
        if error:
            errors[error] += 1
        temp_max = max(temp_max, _count_temp(subject))
    return {
        "subject": name,
        "label": subject.label,
        "kills_planned": kills,
        "kills": done,
        "ok": outcomes["ok"],
        "failed": outcomes["failed"],
        "empty": outcomes["empty"],
        "bad": outcomes["bad"],
        "errors": dict(errors),
        "temp_files_left": _count_temp(subject),
        "temp_files_max": temp_max,
        "writer_not_ready": not_ready,
        "writer_exited_before_kill": exited_early,
        "seconds": round(time.monotonic() - started, 2),
    }


# -- the scenario: run the drivers, make the section ---------------------------------


def _available(subject: type[KillSubject]) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(module) is not None for module in subject.requires)


def _run_drivers(
    names: Sequence[str], kills: int, deadline: float, seed: int
) -> dict[str, dict[str, Any]]:
    """Run one driver per subject, `PARALLEL` at a time, all done by `deadline`."""
    waves = -(-len(names) // PARALLEL)
    results: dict[str, dict[str, Any]] = {}
    pending = list(names)
    running: dict[str, tuple[subprocess.Popen[str], tempfile.TemporaryDirectory[str], float]] = {}
    try:
        while pending or running:
            while pending and len(running) < PARALLEL:
                name = pending.pop(0)
                waves_left = -(-(len(pending) + len(running) + 1) // PARALLEL)
                seconds = max(1.0, (remaining(deadline) - 2.0) / max(1, min(waves, waves_left)))
                tmp = tempfile.TemporaryDirectory(prefix=f"bench-kill-{name}-")
                command = [
                    sys.executable, "-m", "benchmarks.local.killwrite", name,
                    "--kills", str(kills), "--seconds", f"{seconds:.1f}",
                    "--seed", str(seed), "--directory", tmp.name, "--json",
                ]  # fmt: skip
                process = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,  # so that a hung driver goes with its children
                )
                running[name] = (process, tmp, time.monotonic() + seconds + 15.0)
            time.sleep(0.05)
            for name, (process, tmp, hard_stop) in list(running.items()):
                if process.poll() is None and time.monotonic() < hard_stop:
                    continue
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                out, err = process.communicate()
                tmp.cleanup()
                del running[name]
                try:
                    results[name] = json.loads(out)
                except json.JSONDecodeError:
                    tail = err.strip().splitlines()[-3:]
                    results[name] = {"subject": name, "error": " | ".join(tail) or "no output"}
    finally:
        for process, tmp, _ in running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            tmp.cleanup()
    return results


def run(quick: bool, deadline: float, kills: int) -> Section:
    planned = min(kills, QUICK_KILLS) if quick else kills
    names = [name for name, subject in SUBJECTS.items() if _available(subject)]
    skipped = [name for name in SUBJECTS if name not in names]
    started = time.monotonic()
    results = _run_drivers(names, planned, deadline, seed=int(time.time()))
    rows, bars, targets = [], [], []
    for name in names:
        subject, result = SUBJECTS[name], results[name]
        if "error" in result:
            rows.append([name, "error", result["error"], "", "", "", ""])
            continue
        errors = ", ".join(
            f"{k.rsplit('.', 1)[-1]} {v}" for k, v in sorted(result["errors"].items())
        )
        rows.append(
            [
                f"{'**' + name + '**' if subject.is_sessionguard else name}",
                str(result["kills"]),
                f"{result['failed']}" + (f" ({errors})" if errors else ""),
                str(result["empty"]),
                str(result["bad"]),
                f"{result['temp_files_left']} (max {result['temp_files_max']})",
                f"{result['ok'] / result['kills']:.0%}" if result["kills"] else "n/a",
            ]
        )
        lost = result["failed"] + result["empty"] + result["bad"]
        bars.append(
            Bar(
                "kill mid-write: % of kills after which the session did not load intact "
                "(lower is better)",
                name,
                100.0 * lost / result["kills"] if result["kills"] else 0.0,
                subject.is_sessionguard,
            )
        )
        if subject.is_sessionguard:
            short = result["kills"] < planned
            targets.append(
                Target(
                    f"{name}: zero failed, empty or damaged loads after SIGKILL mid-write",
                    f"{result['failed']} failed, {result['empty']} empty, {result['bad']} bad "
                    f"of {result['kills']} kills" + (f" (planned {planned})" if short else ""),
                    lost == 0 and result["kills"] > 0,
                )
            )
    for name in names:
        if name in results and "error" in results[name] and SUBJECTS[name].is_sessionguard:
            targets.append(Target(f"{name}: zero failed loads after SIGKILL mid-write",
                                  f"driver error: {results[name]['error']}", False))  # fmt: skip
    notes = [
        f"A child saves one session in a loop (payload {SIZES[0] // 1000}-{SIZES[1] // 1000} KB, "
        f"a different size each save) through the store's own API and is SIGKILLed "
        f"0-{MAX_KILL_DELAY * 1000:.0f} ms after it is ready; then the session is loaded through "
        "the same API. *failed*: the load raised; *empty*: no session or none of our data; "
        "*bad*: data of the wrong length; *temp files*: left in the store's directory at the end "
        "(and the most seen after any kill).",
        "Temp files: "
        + "; ".join(f"{n}: {SUBJECTS[n].temp_files}" for n in names)
        + ". sessionguard's `purge_expired()` also removes orphaned temp files.",
    ]
    if skipped:
        notes.append(f"Skipped (library not installed): {', '.join(skipped)}.")
    table = markdown_table(
        [
            "subject",
            "kills",
            "failed loads",
            "empty loads",
            "bad data",
            "temp files left",
            "intact",
        ],
        rows,
    )
    return Section(
        key="kill-mid-write",
        title=f"Kill mid-write ({planned} SIGKILLs per subject)",
        markdown=table + "\n\n" + "\n\n".join(notes) + "\n",
        data={
            "kills_planned": planned,
            "max_kill_delay_s": MAX_KILL_DELAY,
            "payload_bytes": list(SIZES),
            "wall_s": round(time.monotonic() - started, 2),
            "skipped": skipped,
            "results": results,
        },
        targets=targets,
        bars=bars,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("subject", choices=sorted(SUBJECTS))
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--directory", help="an empty directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the raw counts as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"bench-kill-{args.subject}-") as tmp:
        result = drive(args.subject, args.directory or tmp, args.kills, args.seconds, args.seed)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
