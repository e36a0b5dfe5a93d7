"""sessionguard's ASGI middleware in a Starlette app, on uvicorn workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sessionguard import asgi_app, setting, store, subject

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> Starlette:
    """The app uvicorn serves: `SG_STORE` and `SG_MERGE` choose the configuration."""
    return asgi_app(store, merge=setting("SG_MERGE"))


SUBJECTS = [
    subject(adapter="asgi", module=__name__, store="file"),
    subject(adapter="asgi", module=__name__, store="file", merge=False),
    subject(adapter="asgi", module=__name__, store="durable"),
    subject(adapter="asgi", module=__name__, store="durable", merge=False),
    subject(adapter="asgi", module=__name__, store="sqlite"),
    subject(adapter="asgi", module=__name__, store="redis"),
]
