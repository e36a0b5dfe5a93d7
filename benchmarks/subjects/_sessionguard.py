"""What the sessionguard subjects share: the secret, the store from the environment, ids."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from ..harness import SERVICE_URL_ENV, Storage, Subject

if TYPE_CHECKING:
    from sessionguard.stores.file import FileStore
    from sessionguard.stores.redis import RedisStore
    from sessionguard.stores.sql import SQLStore

#: Not a secret: the benchmark servers listen on 127.0.0.1 only and are thrown away.
SECRET_KEY = "benchmark-secret-key-not-for-production"

#: `SG_STORE` values: how the subject keeps its sessions.
StoreName = Literal["file", "durable", "sqlite", "redis", "postgres"]
STORAGE: Mapping[StoreName, Storage] = {
    "file": "file",
    "durable": "file",
    "sqlite": "sqlite",
    "redis": "redis",
    "postgres": "postgres",
}
SERVICES: Mapping[StoreName, tuple[str, ...]] = {"redis": ("redis",), "postgres": ("postgres",)}
REQUIRES: Mapping[StoreName, tuple[str, ...]] = {
    "sqlite": ("sqlalchemy", "aiosqlite"),
    "redis": ("redis",),
    "postgres": ("sqlalchemy", "psycopg"),
}
STORE_TEXT: Mapping[StoreName, str] = {
    "file": "FileStore(durable=False)",
    "durable": "FileStore(durable=True)",
    "sqlite": "SQLStore(SQLite)",
    "redis": "RedisStore",
    "postgres": "SQLStore(PostgreSQL)",
}


def session_id(cookie_value: str) -> str:
    """The session id a sessionguard cookie (`<id>.<signature>`) names."""
    return cookie_value.partition(".")[0]


def setting(name: str) -> bool:
    """A boolean switch the subject passed in the server's environment ("1" or "0")."""
    return os.environ[name] == "1"


def store() -> FileStore | SQLStore | RedisStore:
    """The store `SG_STORE` names, in `BENCH_STORE_DIR` or at the service's URL."""
    name = os.environ["SG_STORE"]
    directory = os.environ["BENCH_STORE_DIR"]
    if name in ("file", "durable"):
        from sessionguard import FileStore

        return FileStore(directory, durable=name == "durable")
    if name == "redis":
        from sessionguard.stores.redis import RedisStore

        return RedisStore(os.environ[SERVICE_URL_ENV["redis"]])
    from sessionguard.stores.sql import SQLStore

    if name == "sqlite":
        return SQLStore(f"sqlite:///{directory}/sessions.db")
    return SQLStore(os.environ[SERVICE_URL_ENV["postgres"]])


def configure_logging() -> None:
    # Neither gunicorn nor uvicorn configures the root logger: without this,
    # sessionguard's "not saved" errors would reach the log without their level.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def env(*, store: StoreName, merge: bool) -> dict[str, str]:
    return {"SG_STORE": store, "SG_MERGE": str(int(merge))}


def name(adapter: str, store: StoreName, merge: bool) -> str:
    """`sg-wsgi-file`, and `sg-wsgi-file-lww` for its merge=False baseline."""
    return f"sg-{adapter}-{store}" + ("" if merge else "-lww")


def subject(
    *,
    adapter: Literal["wsgi", "asgi"],
    module: str,
    store: StoreName,
    merge: bool = True,
    default: bool = True,
) -> Subject:
    """One sessionguard configuration; a merge=True file subject is compared with its `-lww`."""
    wsgi = adapter == "wsgi"
    framework = "WSGI + Flask" if wsgi else "ASGI + Starlette"
    server = "gunicorn sync workers" if wsgi else "uvicorn workers"
    has_baseline = merge and store in ("file", "durable")
    return Subject(
        name=name(adapter, store, merge),
        description=(
            f"sessionguard {framework}, {STORE_TEXT[store]}, merge={merge}"
            f"{'' if merge else ' (last writer wins: the baseline)'}, {server}"
        ),
        server="gunicorn-sync" if wsgi else "uvicorn",
        app=f"{module}:create_app",
        env=env(store=store, merge=merge),
        settings={
            "store": STORE_TEXT[store],
            "durable": store == "durable",
            "merge": merge,
        },
        session_id=session_id,
        baseline=name(adapter, store, False) if has_baseline else None,
        requires=(("flask", "gunicorn") if wsgi else ("starlette", "uvicorn"))
        + REQUIRES.get(store, ()),
        family="sessionguard",
        storage=STORAGE[store],
        services=SERVICES.get(store, ()),
        default=default and store not in SERVICES,
    )
