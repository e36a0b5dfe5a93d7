"""A session's size is bounded (`max_size`, 64 KiB by default), under both adapters.

The encoded size is only known when the session is saved, so a request that would store
more than `max_size` bytes gets 413 and writes nothing: the stored session stays as it
was, and an anonymous request creates no record at all (issue 10, finding 8).
"""

from __future__ import annotations

import time
from pathlib import Path

from sessionguard.codec import Envelope, encode
from sessionguard.options import build_core
from tests.trees import tree

from .apps import CountingFileStore, cookie_header, session_set_cookie
from .conftest import ClientFactory

# What the apps' /count stores on a session's first request, and what /login adds.
ONE_COUNT = len(encode(Envelope({"count": 1}, time.time()), key=b"k" * 32))


def records(store_dir: Path) -> list[str]:
    return [path for path, body in tree(store_dir).items() if body is not None and "/" in path]


async def test_a_save_over_max_size_answers_413_and_leaves_the_session_as_it_was(
    make_client: ClientFactory, store: CountingFileStore, store_dir: Path
) -> None:
    client = make_client(max_size=ONE_COUNT + 4)
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    before = tree(store_dir)

    response = await client.post("/login", cookie=cookie_header(cookie.value))  # adds "user"

    assert response.status_code == 413
    assert response.text == "The session is too large to be saved; nothing was changed.\n"
    assert session_set_cookie(response) is None
    assert tree(store_dir) == before
    again = await client.get("/read", cookie=cookie_header(cookie.value))
    assert again.json() == {"count": 1}


async def test_an_anonymous_request_over_max_size_creates_no_record(
    make_client: ClientFactory, store_dir: Path
) -> None:
    client = make_client(max_size=ONE_COUNT - 1)

    response = await client.get("/count")

    assert response.status_code == 413
    assert session_set_cookie(response) is None
    assert records(store_dir) == []


def test_the_default_limit_is_64_kib() -> None:
    assert build_core("secret").max_size == 64 * 1024
