"""What the sessionguard subjects share: the secret, the store from the environment, ids,
and their apps (also served by every host of `benchmarks.cluster`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, Unpack

from ..harness import SERVICE_URL_ENV, Storage, Subject
from ._routes import flask_app, starlette_routes

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from sessionguard import AsyncStore, Session, SyncStore
    from sessionguard.options import SessionOptions
    from sessionguard.stores.file import FileStore
    from sessionguard.stores.redis import RedisStore
    from sessionguard.stores.sql import SQLStore
    from sessionguard.wsgi import SessionMiddleware as WSGISessionMiddleware

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


def wsgi_app(
    import_name: str, open_store: Callable[[], SyncStore], **options: Unpack[SessionOptions]
) -> WSGISessionMiddleware:
    """The routes in a Flask app (named `import_name`) behind sessionguard's WSGI
    middleware, on the store `open_store()` opens once logging is configured."""
    from flask import request

    from sessionguard.wsgi import ENVIRON_KEY, SessionMiddleware

    configure_logging()

    def current() -> Session:
        session: Session = request.environ[ENVIRON_KEY]
        return session

    app = flask_app(import_name, current)
    return SessionMiddleware(app, SECRET_KEY, store=open_store(), **options)


def asgi_app(open_store: Callable[[], AsyncStore], **options: Unpack[SessionOptions]) -> Starlette:
    """The routes in a Starlette app behind sessionguard's ASGI middleware, on the store
    `open_store()` opens once logging is configured."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    from sessionguard.asgi import SessionMiddleware

    configure_logging()
    session = Middleware(SessionMiddleware, secret_key=SECRET_KEY, store=open_store(), **options)
    return Starlette(routes=starlette_routes(), middleware=[session])


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
