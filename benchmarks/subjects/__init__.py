"""The subjects: one module per library under test, each exporting `SUBJECTS`.

Every subject's app answers the routes the scenarios use:

* `GET /health`: 200 without touching the session (the harness polls it at start-up);
* `POST /set/{key}`: sets `session[key]` and answers 200;
* `GET /keys`: 200 with the session's keys as a JSON list.

A subject module is imported by the benchmark runner *and*, as the app's module, by the
server. So it imports its framework and library inside the app factory only: a runner
that lacks them (a peer not installed) can still list and skip the subject.
"""

from __future__ import annotations

from ..harness import Subject
from . import (
    beaker_file,
    django_peer,
    flask_session_peer,
    naive_pickle,
    sessionguard_asgi,
    sessionguard_wsgi,
    starlette_cookie,
    starsessions_redis,
)

__all__ = ["all_subjects"]


def all_subjects() -> list[Subject]:
    """Every subject, in the order the tables show them (each baseline next to its subject).

    Those with `default=False` run only under `--all` or when `-s` names them.
    """
    return [
        *sessionguard_wsgi.SUBJECTS,
        *sessionguard_asgi.SUBJECTS,
        *starlette_cookie.SUBJECTS,
        *starsessions_redis.SUBJECTS,
        *flask_session_peer.SUBJECTS,
        *beaker_file.SUBJECTS,
        *django_peer.SUBJECTS,  # sg-django-file, then Django's own engines it is compared with
        *naive_pickle.SUBJECTS,
    ]
