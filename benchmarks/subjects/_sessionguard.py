"""What the sessionguard subjects share: the secret, the store from the environment, ids."""

from __future__ import annotations

import logging
import os

from sessionguard import FileStore

#: Not a secret: the benchmark servers listen on 127.0.0.1 only and are thrown away.
SECRET_KEY = "benchmark-secret-key-not-for-production"


def session_id(cookie_value: str) -> str:
    """The session id a sessionguard cookie (`<id>.<signature>`) names."""
    return cookie_value.partition(".")[0]


def setting(name: str) -> bool:
    """A boolean switch the subject passed in the server's environment ("1" or "0")."""
    return os.environ[name] == "1"


def file_store() -> FileStore:
    return FileStore(os.environ["BENCH_STORE_DIR"], durable=setting("SG_DURABLE"))


def configure_logging() -> None:
    # Neither gunicorn nor uvicorn configures the root logger: without this,
    # sessionguard's "not saved" errors would reach the log without their level.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def env(*, durable: bool, merge: bool) -> dict[str, str]:
    return {"SG_DURABLE": str(int(durable)), "SG_MERGE": str(int(merge))}
