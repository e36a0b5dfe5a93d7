"""The `make run` demo: what sessionguard is for, in one page, on the embedded file store.

Open http://127.0.0.1:8000/ and press the buttons. One process serves two copies of the
same little app, each on a FileStore of its own under ./sessions:

* `/guarded/...`: sessionguard as it ships (`merge=True`);
* `/lww/...`: the same middleware with `merge=False`, where the last writer wins, as in
  most session libraries.

The page (examples/demo.html) fires concurrent requests from your browser on your own
session, each setting a key of its own, and shows how many each copy kept; damages the
stored record and shows what the next request gets, with the log line; and logs you out
while requests are still in flight.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from sessionguard import FileStore
from sessionguard.asgi import SessionMiddleware, get_session

# A fixed key is fine for a local demo only; production reads it from the environment.
SECRET_KEY = os.environ.get("SESSIONGUARD_SECRET", "demo-only-change-me")
DIRECTORY = Path(os.environ.get("SESSIONGUARD_DEMO_DIR", "sessions"))
PAGE = Path(__file__).with_name("demo.html")
#: The longest a demo write may wait before it sets its key (it widens the race).
MAX_DELAY = 2.0


class RecentLines(logging.Handler):
    """The last lines sessionguard logged, for the page to show."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


LOG = RecentLines()
logging.getLogger("sessionguard").addHandler(LOG)
logging.getLogger("sessionguard").setLevel(logging.INFO)


def copy_of_the_app(name: str, *, merge: bool) -> Starlette:
    """The demo's routes behind sessionguard, on a FileStore of their own."""
    store = FileStore(DIRECTORY / name)

    async def write(request: Request) -> Response:
        # The session was read when the request came in; waiting before writing lets
        # the other requests of the burst read it too, as slow handlers do.
        delay = min(float(request.query_params.get("delay", "0")), MAX_DELAY)
        if delay > 0:
            await anyio.sleep(delay)
        request.session[request.query_params["key"]] = True
        return JSONResponse({"ok": True})

    async def read(request: Request) -> Response:
        return JSONResponse({"keys": sorted(request.session)})

    async def log_out(request: Request) -> Response:
        get_session(request).invalidate()
        return JSONResponse({"ok": True})

    async def damage(request: Request) -> Response:
        # Overwrite every stored record of this copy with bytes that are no session: a
        # truncated write, a disk error, a foreign program. The next request meets it.
        records = await anyio.to_thread.run_sync(lambda: list(store.scan()))
        for found in records:
            await store.asave(found.key, b"\x00not a session\x00", expires_at=time.time() + 600)
        return JSONResponse({"damaged": len(records)})

    return Starlette(
        routes=[
            Route("/write", write, methods=["POST"]),
            Route("/read", read),
            Route("/logout", log_out, methods=["POST"]),
            Route("/damage", damage, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=SECRET_KEY,
                store=store,
                merge=merge,
                session_cookie=f"demo-{name}",
            )
        ],
    )


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


async def recent_log(request: Request) -> Response:
    return JSONResponse({"lines": list(LOG.lines)})


app = Starlette(
    routes=[
        Route("/", page),
        Route("/log", recent_log),
        Mount("/guarded", copy_of_the_app("guarded", merge=True)),
        Mount("/lww", copy_of_the_app("lww", merge=False)),
    ]
)
