"""Django configured once per test process, in code, with this project's settings.

Every test module that needs Django (these, and the migration tests that seed Django's
own engines) goes through `configure_in_process`, so whichever runs first configures
the same project.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_lock = threading.Lock()


def configure_in_process(directory: Path) -> None:
    """Configure Django (if nothing did yet) with a SQLite database and a FileStore
    under `directory`, and create the tables."""
    import django
    from django.conf import settings

    from .settings import build

    with _lock:
        if settings.configured:
            return
        settings.configure(
            **build(
                store=str(directory / "sessions"),
                database=str(directory / "django.sqlite3"),
                file_path=str(directory / "django-file-sessions"),
            )
        )
        (directory / "django-file-sessions").mkdir(exist_ok=True)
        django.setup()
        # In a thread of its own: Django refuses ORM calls under a running event loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(_migrate).result()


def _migrate() -> None:
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0, interactive=False)
    connections.close_all()
