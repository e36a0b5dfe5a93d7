"""Django's session framework in a minimal project configured in code, on gunicorn.

One project, three session engines (`DJANGO_SESSION_ENGINE`), the same views and server:

* `django-file`: Django's `file` backend (temp file + rename per save, no lock);
* `django-db`: Django's `db` backend on SQLite, its table migrated when a worker starts;
* `sg-django-file`: sessionguard's engine (`SESSION_ENGINE = "sessionguard.django"`, its
  `SessionMiddleware` in place of Django's) on `FileStore(durable=False)` in the run's
  store directory, as `sg-wsgi-file` has it: like Django's `file` backend, no fsync.

All with SESSION_SAVE_EVERY_REQUEST=True, as the issue asks: every request, reads
included, writes the session back. SQLite is set up as sessionguard's SQLStore sets it
up (WAL, synchronous=NORMAL, a 5 s busy timeout), with `transaction_mode="IMMEDIATE"`,
which Django's documentation recommends against "database is locked" errors.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..harness import Subject
from . import _sessionguard
from ._peer import SECRET_KEY, plain_id

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["SUBJECTS", "create_app", "urlpatterns"]

COOKIE_NAME = "sessionid"  # Django's default
#: Filled in by `create_app`; Django reads it from this module (ROOT_URLCONF).
urlpatterns: list[Any] = []

#: `DJANGO_SESSION_ENGINE` values (Django's own backends, or sessionguard's engine): the
#: `SESSION_ENGINE` setting and the session middleware each is used with.
SESSION_ENGINES: Mapping[str, tuple[str, str]] = {
    "file": (
        "django.contrib.sessions.backends.file",
        "django.contrib.sessions.middleware.SessionMiddleware",
    ),
    "db": (
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.middleware.SessionMiddleware",
    ),
    "sessionguard": ("sessionguard.django", "sessionguard.django.SessionMiddleware"),
}


def create_app() -> WSGIApplication:
    """The app gunicorn serves; `DJANGO_SESSION_ENGINE` is "file", "db" or "sessionguard"."""
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.urls import path

    engine = os.environ["DJANGO_SESSION_ENGINE"]
    if engine not in SESSION_ENGINES:
        raise RuntimeError(f"DJANGO_SESSION_ENGINE must be one of {', '.join(SESSION_ENGINES)}")
    session_engine, middleware = SESSION_ENGINES[engine]
    directory = os.environ["BENCH_STORE_DIR"]
    database = os.path.join(directory, "django.sqlite3")
    extra: dict[str, Any] = {}
    if engine == "sessionguard":
        # `SG_STORE` chooses the store, as for the other sessionguard subjects.
        extra["SESSIONGUARD_STORE"] = _sessionguard.store()
        _sessionguard.configure_logging()  # its "not saved" errors, with their level
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=[middleware],
        SESSION_ENGINE=session_engine,
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
        **extra,
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


def _subject(engine: Literal["file", "db"]) -> Subject:
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


def _sessionguard_subject(store: _sessionguard.StoreName) -> Subject:
    """This project on sessionguard's Django engine, compared with Django's own engines."""
    text = _sessionguard.STORE_TEXT[store]
    return Subject(
        name=_sessionguard.name("django", store, True),
        description=(
            f"sessionguard's Django engine, {text}, SESSION_SAVE_EVERY_REQUEST=True, "
            "gunicorn sync workers (the django-* project and views)"
        ),
        server="gunicorn-sync",
        app=f"{__name__}:create_app",
        env={"DJANGO_SESSION_ENGINE": "sessionguard", "SG_STORE": store},
        settings={
            "store": text,
            "durable": store == "durable",
            "merge": True,
            "save_every_request": True,
        },
        cookie_name=COOKIE_NAME,
        session_id=_sessionguard.session_id,
        requires=("django", "gunicorn") + _sessionguard.REQUIRES.get(store, ()),
        family="sessionguard",
        storage=_sessionguard.STORAGE[store],
        services=_sessionguard.SERVICES.get(store, ()),
        counterparts=("django-file", "django-db"),
    )


#: sessionguard's engine first, then the Django engines it is compared with.
SUBJECTS = [_sessionguard_subject("file"), _subject("file"), _subject("db")]
