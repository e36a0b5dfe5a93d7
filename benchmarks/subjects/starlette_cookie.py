"""Starlette's own `SessionMiddleware`: the whole session in a signed cookie, on uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..harness import Subject
from ._peer import SECRET_KEY
from ._routes import starlette_routes

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["SUBJECTS", "create_app"]


def create_app() -> Starlette:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware

    # Starlette's defaults: cookie "session", 14 days, SameSite=lax, itsdangerous signature.
    return Starlette(
        routes=starlette_routes(),
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET_KEY)],
    )


SUBJECTS = [
    Subject(
        name="starlette-cookie",
        description=(
            "Starlette's SessionMiddleware (the session signed into the cookie, no server "
            "store), uvicorn workers"
        ),
        server="uvicorn",
        app=f"{__name__}:create_app",
        settings={"store": "signed cookie"},
        session_id=None,  # the cookie is the data: there is no id to re-issue
        requires=("starlette", "itsdangerous", "uvicorn"),
        storage="cookie",
    )
]
