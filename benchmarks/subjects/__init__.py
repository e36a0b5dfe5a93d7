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
from . import sessionguard_asgi, sessionguard_wsgi

__all__ = ["all_subjects"]


def all_subjects() -> list[Subject]:
    """Every subject, in the order the tables show them (each baseline next to its subject)."""
    return [*sessionguard_wsgi.SUBJECTS, *sessionguard_asgi.SUBJECTS]
