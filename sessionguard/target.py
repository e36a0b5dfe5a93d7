"""Where a store TARGET leads: a directory, a SQLAlchemy URL or a Redis URL
(`redis+cluster://` for any node of a Redis Cluster).

One reading of the string for the command line (`sessionguard scan TARGET`) and for
settings that name a store (Django's `SESSIONGUARD_STORE`). The Redis and SQL stores are
imported only when a URL asks for them, so their extras stay optional.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .stores.base import Store
from .stores.file import FileStore

__all__ = ["open_store", "shown"]

_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")


def open_store(
    target: str, *, create: bool = True, table: str | None = None, prefix: str | None = None
) -> Store:
    """The store a command-line TARGET names: a directory, a SQLAlchemy URL or a Redis URL.

    With `create=False` nothing is created: the directory, SQLite file or table must
    already exist (the commands that only read or clean up use that).
    """
    scheme = urlsplit(target).scheme.lower() if "://" in target else ""
    if scheme in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        from .stores.redis import RedisStore

        # redis+cluster://host:port: any node of a Redis Cluster.
        cluster = scheme.endswith("+cluster")
        url = target.replace("+cluster", "", 1) if cluster else target
        try:
            return RedisStore(url, prefix=prefix or "sessionguard:", cluster=cluster)
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL {shown(target)!r}: {exc}") from exc
    if scheme.partition("+")[0] in _SQL_SCHEMES:
        from .stores.sql import SQLStore

        if not create and scheme.startswith("sqlite"):
            path = target.split(":///", 1)[-1].split("?", 1)[0]
            if not os.path.isfile(path):
                raise ConfigurationError(f"there is no SQLite database at {path!r}")
        options: dict[str, Any] = {"table_name": table} if table else {}
        return SQLStore(target, create_table=create, **options)
    if scheme:
        raise ConfigurationError(
            f"unknown store URL {shown(target)!r}: give a directory, a SQLAlchemy URL "
            "(sqlite:///sessions.db, postgresql+psycopg://...), redis://... or "
            "redis+cluster://..."
        )
    if not create and not os.path.isdir(os.path.join(target, ".locks")):
        # Never turn a mistyped path (`scan /etc`) into a session directory.
        raise ConfigurationError(
            f"{target!r} is not a sessionguard session directory (it has no .locks folder)"
        )
    return FileStore(target, create=create)


def shown(target: str) -> str:
    """`target` with any password in it masked, for messages and reports."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    if parts.password is None:
        return target
    return target.replace(f":{parts.password}@", ":***@", 1)
