"""Django's session framework in a minimal project configured in code, on gunicorn.

`django-file`: the `file` backend (temp file + rename per save, no lock);
`django-db`: the `db` backend on SQLite, its table migrated when a worker starts. Both
with SESSION_SAVE_EVERY_REQUEST=True, as the issue asks: every request, reads
included, writes the session back. SQLite is set up as sessionguard's SQLStore sets it
up (WAL, synchronous=NORMAL, a 5 s busy timeout), with `transaction_mode="IMMEDIATE"`,
which Django's documentation recommends against "database is locked" errors.
"""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING, Any

from ..harness import Subject
from ._peer import SECRET_KEY, plain_id

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["SUBJECTS", "create_app", "urlpatterns"]

COOKIE_NAME = "sessionid"  # Django's default
#: Filled in by `create_app`; Django reads it from this module (ROOT_URLCONF).
urlpatterns: list[Any] = []


def create_app() -> WSGIApplication:
    """The app gunicorn serves; `DJANGO_SESSION_ENGINE` is "file" or "db"."""
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.urls import path

    engine = os.environ["DJANGO_SESSION_ENGINE"]
    directory = os.environ["BENCH_STORE_DIR"]
    database = os.path.join(directory, "django.sqlite3")
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        SESSION_ENGINE=f"django.contrib.sessions.backends.{engine}",
        SESSION_FILE_PATH=directory,
        SESSION_SAVE_EVERY_REQUEST=True,
        SESSION_COOKIE_NAME=COOKIE_NAME,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": database,
                "OPTIONS": {
                    "timeout": 5,
                    "transaction_mode": "IMMEDIATE",
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                },
            }
        },
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()
    if engine == "db":
        # Every worker runs this; the lock makes the first one migrate and the others see
        # the table already there.
        with open(os.path.join(directory, "migrate.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            call_command("migrate", "sessions", verbosity=0, interactive=False)

    def health(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    def set_key(request: HttpRequest, key: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        request.session[key] = 1
        return HttpResponse("ok")

    def keys(request: HttpRequest) -> JsonResponse:
        return JsonResponse(sorted(request.session.keys()), safe=False)

    urlpatterns[:] = [
        path("health", health),
        path("set/<str:key>", set_key),
        path("keys", keys),
    ]
    handler: WSGIApplication = WSGIHandler()
    return handler


def _subject(engine: str) -> Subject:
    return Subject(
        name=f"django-{engine}",
        description=(
            f"Django {'file' if engine == 'file' else 'db (SQLite)'} session backend, "
            "SESSION_SAVE_EVERY_REQUEST=True, gunicorn sync workers"
        ),
        server="gunicorn-sync",
        app=f"{__name__}:create_app",
        env={"DJANGO_SESSION_ENGINE": engine},
        settings={"store": f"django {engine}", "save_every_request": True},
        cookie_name=COOKIE_NAME,
        session_id=plain_id,
        requires=("django", "gunicorn"),
        storage="file" if engine == "file" else "sqlite",
    )


SUBJECTS = [_subject("file"), _subject("db")]
