"""The `sessionguard` command: look into a session store, clean it up, migrate into it.

```
sessionguard scan TARGET [--json]
sessionguard purge TARGET [--corrupt] [--quarantine DIR] [--batch N]
sessionguard migrate --from KIND SOURCE --to TARGET [--cookie-name N] [--trust-pickle]
                     [--django-secret-key K]
sessionguard sessions TARGET --user ID --user-key KEY [--json]
sessionguard revoke TARGET --user ID --user-key KEY [--except SESSION]
```

TARGET is a directory (`FileStore`), a SQLAlchemy URL (`sqlite:///sessions.db`,
`postgresql+psycopg://...`: `SQLStore`) or a Redis URL (`redis://`, `rediss://`:
`RedisStore`). Exit status: 0 when all is well; 1 when `scan` found corrupt records or
`purge` could not remove some; 2 for a usage error or a store that cannot be reached.

Neither command ever unpickles: records are checked with `codec.decode`, which reports a
pickle as `legacy_pickle`. Sessions are named only by `key_hash`, never by their id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from .cliargs import cipher_of, hashed_ids_of, record_keys_of
from .errors import (
    ConfigurationError,
    StoreUnavailableError,
)
from .ops import key_hash
from .quarantine import copy_aside
from .scan import ScanReport, corrupt_reason
from .stores.base import ScannableStore, Store
from .stores.file import FileStore
from .target import open_store, shown as _shown
from .usercommands import add_commands

__all__ = ["main", "open_store"]

# -- scan ------------------------------------------------------------------------------------


def _scan(args: argparse.Namespace, out: TextIO) -> int:
    store = _scannable(open_store(args.target, create=False, table=args.table, prefix=args.prefix))
    try:
        report = ScanReport()
        for found in store.scan(batch_size=args.batch):
            report.add(found, corrupt_reason(found, record_keys_of(args), cipher_of(args)))
        if isinstance(store, FileStore):
            report.leftover_temp_files = [key_hash(k) for k in store.leftover_temp_files()]
    finally:
        store.close()
    if args.json:
        json.dump(report.as_json(_shown(args.target)), out, indent=2)
        out.write("\n")
    else:
        print(report.as_text(_shown(args.target)), file=out)
    return 1 if report.corrupt else 0


# -- purge -----------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal, redrawn in place at most ten times a second."""

    WIDTH = 30

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self._drawn = 0  # length of the line on screen
        self._last = 0.0

    def show(
        self, label: str, done: int, total: int | None, note: str, *, force: bool = False
    ) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.1):
            return
        self._last = now
        if total:
            share = min(done / total, 1.0)
            filled = round(share * self.WIDTH)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:4.0%}"
        else:
            bar = (
                "["
                + "".join("#" if i == done % self.WIDTH else "." for i in range(self.WIDTH))
                + "]"
            )
        line = f"{label:<8} {bar} {note}"
        self.stream.write("\r" + line.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(line)

    def finish(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0


@dataclass
class PurgeResult:
    expired: int = 0
    corrupt: int = 0
    changed: int = 0  # corrupt when scanned, rewritten or gone before the swap: left alone
    errors: int = 0

    def summary(self, quarantine: str | None, corrupt_too: bool) -> str:
        text = f"purge: removed {self.expired:,} expired record(s)"
        if corrupt_too:
            moved = f" (copied to {quarantine} first)" if quarantine else ""
            text += f" and {self.corrupt:,} corrupt record(s){moved}"
            if self.changed:
                text += (
                    f"; {self.changed:,} corrupt record(s) changed meanwhile and were left alone"
                )
        return text + f"; {self.errors:,} error(s)"


def _purge(args: argparse.Namespace, out: TextIO) -> int:
    store = _scannable(open_store(args.target, create=False, table=args.table, prefix=args.prefix))
    progress = Progress(sys.stderr, enabled=sys.stderr.isatty())
    result = PurgeResult()
    corrupt_too = args.corrupt or args.quarantine is not None
    try:
        for step in store.purge_expired_batches(args.batch):
            result.expired += step.removed
            for message in step.errors:
                result.errors += 1
                _warn(message)
            note = f"{result.expired:,} expired removed"
            progress.show("expired", step.done, step.total, note)
        progress.show("expired", 1, 1, f"{result.expired:,} expired removed", force=True)
        if corrupt_too:
            _purge_corrupt(store, args, result, progress)
    except StoreUnavailableError:
        progress.finish()
        if result.expired or result.corrupt:  # say what was done before the store failed
            print(result.summary(args.quarantine, corrupt_too) + "; stopped early", file=out)
        raise
    finally:
        progress.finish()
        store.close()
    print(result.summary(args.quarantine, corrupt_too), file=out)
    return 1 if result.errors else 0


def _purge_corrupt(
    store: ScannableStore, args: argparse.Namespace, result: PurgeResult, progress: Progress
) -> None:
    for examined, found in enumerate(store.scan(batch_size=args.batch), 1):
        progress.show(
            "corrupt", examined, None, f"{examined:,} examined, {result.corrupt:,} removed"
        )
        reason = corrupt_reason(found, record_keys_of(args), cipher_of(args))
        if reason is None:
            continue
        name = key_hash(found.key)
        try:
            if args.quarantine is not None:
                copy_aside(
                    args.quarantine, f"{name}-{reason}-{int(time.time())}.bin", found.record.payload
                )
            # Compare-and-swap: a record a live request rewrote since the scan is kept.
            removed = store.delete(found.key, expected_version=found.record.version)
        except (StoreUnavailableError, OSError) as exc:
            result.errors += 1
            _warn(f"could not remove corrupt session {name} ({reason}): {exc}")
            continue
        if removed:
            result.corrupt += 1
        else:
            result.changed += 1
    progress.show("corrupt", 1, 1, f"{result.corrupt:,} removed", force=True)


# -- migrate ---------------------------------------------------------------------------------


def _migrate(args: argparse.Namespace, out: TextIO) -> int:
    # Imported here: the readers are only needed by this command.
    from .migrate import SOURCE_KINDS, run_migration

    kind, source = args.source
    if kind not in SOURCE_KINDS:
        raise ConfigurationError(
            f"unknown source kind {kind!r}: choose one of {', '.join(SOURCE_KINDS)}"
        )
    store = open_store(args.to, table=args.table, prefix=args.prefix)
    progress = Progress(sys.stderr, enabled=sys.stderr.isatty())
    try:
        report = run_migration(
            kind,
            source,
            store,
            cookie_name=args.cookie_name,
            trust_pickle=args.trust_pickle,
            django_secret_key=args.django_secret_key,
            sign_with=next(iter(record_keys_of(args) or ()), None),
            cipher=cipher_of(args),
            hashed_ids=hashed_ids_of(args),
            progress=lambda n: progress.show("migrate", n, None, f"{n:,} examined"),
        )
    finally:
        progress.finish()
        store.close()
    print(report.summary(), file=out)
    return 0


# -- entry point -----------------------------------------------------------------------------


def _scannable(store: Store) -> ScannableStore:
    if not isinstance(store, ScannableStore):  # pragma: no cover - every built-in store is
        store.close()
        raise ConfigurationError(f"{store!r} cannot be scanned")
    return store


def _warn(message: str) -> None:
    print(f"sessionguard: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessionguard", description="Inspect, clean up and migrate session stores."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store_options = argparse.ArgumentParser(add_help=False)
    store_options.add_argument("--table", help="SQL table name (default sessionguard_sessions)")
    store_options.add_argument("--prefix", help="Redis key prefix (default sessionguard:)")
    store_options.add_argument(
        "--batch", type=_positive, default=500, metavar="N", help="records per batch (500)"
    )
    store_options.add_argument(
        "--secret-key",
        action="append",
        metavar="KEY",
        help="the app's secret_key (repeat for older ones; or set SESSIONGUARD_SECRET_KEY): "
        "scan and purge --corrupt also check record signatures, migrate signs what it writes",
    )
    store_options.add_argument(
        "--cipher-key",
        action="append",
        metavar="KEY",
        help="the app's RecordCipher key (repeat for older ones; or set "
        "SESSIONGUARD_CIPHER_KEY): read encrypted records, and migrate encrypts what it "
        "writes; without it, encrypted records are only checked for integrity",
    )
    store_options.add_argument(
        "--id-key",
        metavar="KEY",
        help="the app's HashedIds key (or set SESSIONGUARD_ID_KEY): sessions and revoke find "
        "the user under it, and migrate stores what it copies under hashed ids",
    )
    target = "a directory, sqlite:///file.db, postgresql+psycopg://... or redis://..."
    _add_scan_and_purge(commands, store_options, target)
    _add_migrate(commands, store_options, target)
    add_commands(commands, store_options, target)
    return parser


def _add_scan_and_purge(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    store_options: argparse.ArgumentParser,
    target: str,
) -> None:
    scan = commands.add_parser(
        "scan",
        parents=[store_options],
        help="count live, expired and corrupt records; exit 1 if any is corrupt",
    )
    scan.add_argument("target", metavar="TARGET", help=target)
    scan.add_argument("--json", action="store_true", help="print the report as JSON")
    scan.set_defaults(run=_scan)

    purge = commands.add_parser(
        "purge", parents=[store_options], help="remove expired (and corrupt) records"
    )
    purge.add_argument("target", metavar="TARGET", help=target)
    purge.add_argument("--corrupt", action="store_true", help="also remove corrupt records")
    purge.add_argument(
        "--quarantine",
        metavar="DIR",
        help="copy corrupt records into DIR before removing them (implies --corrupt)",
    )
    purge.set_defaults(run=_purge)


def _add_migrate(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    store_options: argparse.ArgumentParser,
    target: str,
) -> None:
    migrate = commands.add_parser(
        "migrate", parents=[store_options], help="copy sessions from another backend"
    )
    migrate.add_argument(
        "--from",
        dest="source",
        nargs=2,
        required=True,
        metavar=("KIND", "SOURCE"),
        help="django-file, django-db, flask-session, beaker-file, pickle-dir or quixote-dir, "
        "and its location",
    )
    migrate.add_argument("--to", required=True, metavar="TARGET", help=target)
    migrate.add_argument("--cookie-name", help="the old backend's cookie name")
    migrate.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow unpickling (runs code named in the files: only for files your app wrote)",
    )
    migrate.add_argument("--django-secret-key", help="Django's SECRET_KEY, to check signatures")
    migrate.set_defaults(run=_migrate)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    logging.basicConfig(format="sessionguard: %(message)s", level=logging.WARNING)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    run: Callable[[argparse.Namespace, TextIO], int] = args.run
    try:
        return run(args, out or sys.stdout)
    except (StoreUnavailableError, ConfigurationError) as exc:
        _warn(str(exc))
        return 2
    except ImportError as exc:
        _warn(f"{exc}; install the extra for this store, e.g. pip install 'sessionguard[all]'")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`sessionguard scan --json | head`): stop quietly, as a
        # tool killed by SIGPIPE does, and keep Python from reporting the unflushed rest.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
