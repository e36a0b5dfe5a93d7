"""`sessionguard sessions` and `sessionguard revoke`: a user's sessions from the command line.

```
sessionguard sessions TARGET --user ID --user-key KEY --secret-key K [--json]
sessionguard revoke TARGET --user ID --user-key KEY --secret-key K [--except SESSION]
```

Both need the app's secret key (records are checked with it before they count as the
user's) and its `user_key`. Sessions are shown by the short hash of their id, never the
id; `--except` takes such a hash ("log out my other devices").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from collections.abc import Callable
from typing import TextIO, TypeVar

from .cliargs import cipher_of, hashed_ids_of, secrets_of
from .errors import ConfigurationError
from .stores.base import BaseStore
from .target import open_store
from .users import UserSession, UserSessions

__all__ = ["add_commands"]

_T = TypeVar("_T")


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    store_options: argparse.ArgumentParser,
    target: str,
) -> None:
    user_options = argparse.ArgumentParser(add_help=False)
    user_options.add_argument("target", metavar="TARGET", help=target)
    user_options.add_argument("--user", required=True, metavar="ID", help="the user's id")
    user_options.add_argument(
        "--user-key",
        default=os.environ.get("SESSIONGUARD_USER_KEY"),
        metavar="KEY",
        help="the session key that names the user: the middleware's user_key (or set "
        "SESSIONGUARD_USER_KEY)",
    )
    sessions = commands.add_parser(
        "sessions", parents=[store_options, user_options], help="list a user's live sessions"
    )
    sessions.add_argument("--json", action="store_true", help="print them as JSON")
    sessions.set_defaults(run=_sessions)
    revoke = commands.add_parser(
        "revoke", parents=[store_options, user_options], help="end a user's sessions"
    )
    revoke.add_argument(
        "--except",
        dest="keep",
        metavar="SESSION",
        help="the hash (as `sessions` shows it) of the one session to keep",
    )
    revoke.set_defaults(run=_revoke)


def _sessions(args: argparse.Namespace, out: TextIO) -> int:
    found = _run(args, lambda users: users.sessions(args.user))
    if args.json:
        shown = [{"session": s.session, **_times(s), **_device(s)} for s in found]
        json.dump({"user": args.user, "sessions": shown}, out, indent=2)
        out.write("\n")
        return 0
    for each in found:
        times = _times(each)
        line = f"{each.session}  created {times['created']}  last seen {times['last_seen']}"
        described = "  ".join(_device(each).values())
        print(f"{line}  expires {times['expires']}{'  ' if described else ''}{described}", file=out)
    print(f"sessions: {len(found):,} live session(s) of user {args.user!r}", file=out)
    return 0


def _revoke(args: argparse.Namespace, out: TextIO) -> int:
    ended = _run(args, lambda users: users.revoke(args.user, keep=args.keep))
    kept = f", kept {args.keep}" if args.keep else ""
    print(f"revoke: ended {ended:,} session(s) of user {args.user!r}{kept}", file=out)
    return 0


def _run(args: argparse.Namespace, act: Callable[[UserSessions], _T]) -> _T:
    secrets = secrets_of(args)
    if not secrets:
        raise ConfigurationError(
            "give the app's secret key (--secret-key, or SESSIONGUARD_SECRET_KEY): a record "
            "counts as the user's only once its signature is checked"
        )
    if not args.user_key:
        raise ConfigurationError(
            "give the session key that names the user (--user-key, the middleware's user_key)"
        )
    store = open_store(args.target, create=False, table=args.table, prefix=args.prefix)
    try:
        if not isinstance(store, BaseStore):  # pragma: no cover - every built-in store is
            raise ConfigurationError(f"{store!r} keeps no per-user index")
        users = UserSessions(
            store,
            secrets,
            user_key=args.user_key,
            cipher=cipher_of(args),
            hashed_ids=hashed_ids_of(args),
        )
        return act(users)
    finally:
        store.close()


def _times(session: UserSession) -> dict[str, str]:
    def iso(at: float) -> str:
        moment = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(microsecond=0)
        return moment.isoformat().replace("+00:00", "Z")

    return {
        "created": iso(session.created_at),
        "last_seen": iso(session.last_seen),
        "expires": iso(session.expires_at),
    }


def _device(session: UserSession) -> dict[str, str]:
    fields = {"label": session.label, "user_agent": session.user_agent, "network": session.network}
    return {name: value for name, value in fields.items() if value}
