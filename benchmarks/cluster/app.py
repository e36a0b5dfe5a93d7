"""The app every host serves: the benchmark subjects' routes on a store the hosts share.

`create_wsgi_app()` (Flask behind sessionguard's WSGI middleware, for gunicorn) and
`create_app()` (Starlette behind the ASGI middleware, for uvicorn) are the sessionguard
subjects' apps (`GET /health`, `POST /set/{key}`, `GET /keys`), with the same secret, so
a cookie one host sets is good on every other. Only the store differs: it comes from the
environment: `SG_CLUSTER_STORE` is `redis-cluster` (`RedisStore(url, cluster=True)`) or
`postgres` (`SQLStore(url)`), at `SG_CLUSTER_URL`. (The single-host subjects' `store()`
opens a plain `RedisStore`, which cannot talk to a cluster.)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from ..subjects._sessionguard import asgi_app, wsgi_app

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from sessionguard.stores.redis import RedisStore
    from sessionguard.stores.sql import SQLStore
    from sessionguard.wsgi import SessionMiddleware

__all__ = ["STORE_ENV", "URL_ENV", "StoreKind", "create_app", "create_wsgi_app", "store"]

StoreKind = Literal["redis-cluster", "postgres"]
STORE_ENV = "SG_CLUSTER_STORE"
URL_ENV = "SG_CLUSTER_URL"


def store() -> RedisStore | SQLStore:
    kind, url = os.environ[STORE_ENV], os.environ[URL_ENV]
    if kind == "redis-cluster":
        from sessionguard.stores.redis import RedisStore

        return RedisStore(url, cluster=True)
    if kind == "postgres":
        from sessionguard.stores.sql import SQLStore

        return SQLStore(url)
    raise ValueError(f"{STORE_ENV}={kind!r}: expected 'redis-cluster' or 'postgres'")


def create_wsgi_app() -> SessionMiddleware:
    """For gunicorn: `benchmarks.cluster.app:create_wsgi_app()`."""
    return wsgi_app(__name__, store)


def create_app() -> Starlette:
    """For uvicorn: `--factory benchmarks.cluster.app:create_app`."""
    return asgi_app(store)
