"""sessionguard's WSGI middleware around a Flask app, on gunicorn sync workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sessionguard import setting, store, subject, wsgi_app

if TYPE_CHECKING:
    from sessionguard.wsgi import SessionMiddleware

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> SessionMiddleware:
    """The app gunicorn serves: `SG_STORE` and `SG_MERGE` choose the configuration."""
    return wsgi_app(__name__, store, merge=setting("SG_MERGE"))


SUBJECTS = [
    subject(adapter="wsgi", module=__name__, store="file"),
    subject(adapter="wsgi", module=__name__, store="file", merge=False),
    subject(adapter="wsgi", module=__name__, store="durable"),
    subject(adapter="wsgi", module=__name__, store="durable", merge=False),
    subject(adapter="wsgi", module=__name__, store="postgres"),
]
