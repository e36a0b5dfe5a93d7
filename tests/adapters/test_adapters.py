"""Behaviour every adapter shares, run under all four apps: Starlette and FastAPI (ASGI),
raw WSGI and Flask (WSGI)."""

from __future__ import annotations

import os

import pytest

from sessionguard.cookie import Signer

from .apps import (
    ASGI_FRAMEWORKS,
    SECRET,
    WSGI_FRAMEWORKS,
    CountingFileStore,
    Framework,
    cookie_header,
    session_set_cookie,
)
from .conftest import ClientFactory


@pytest.fixture(params=ASGI_FRAMEWORKS + WSGI_FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> Framework:
    value: Framework = request.param
    return value


async def test_counter_increments_across_requests(make_client: ClientFactory) -> None:
    client = make_client()
    first = await client.get("/count")
    cookie = session_set_cookie(first)
    assert first.status_code == 200 and first.json() == {"count": 1}
    assert cookie is not None
    for expected in (2, 3):
        response = await client.get("/count", cookie=cookie_header(cookie.value))
        assert response.json() == {"count": expected}
        again = session_set_cookie(response)
        assert again is not None and again.value == cookie.value


async def test_set_cookie_carries_default_attributes(make_client: ClientFactory) -> None:
    response = await make_client().get("/count")
    cookie = session_set_cookie(response)
    assert cookie is not None
    assert Signer(SECRET).unsign(cookie.value) == cookie.session_id
    assert cookie.attributes == {
        "max-age": str(14 * 24 * 60 * 60),
        "path": "/",
        "httponly": "",
        "samesite": "lax",
    }


async def test_set_cookie_honours_https_only_domain_name_path_and_max_age(
    make_client: ClientFactory,
) -> None:
    client = make_client(
        https_only=True,
        domain="example.com",
        session_cookie="sid",
        path="/app",
        max_age=600,
        same_site="strict",
    )
    response = await client.get("/count")
    assert session_set_cookie(response) is None
    cookie = session_set_cookie(response, name="sid")
    assert cookie is not None
    assert cookie.attributes == {
        "max-age": "600",
        "path": "/app",
        "domain": "example.com",
        "httponly": "",
        "samesite": "strict",
        "secure": "",
    }
    again = await client.get("/count", cookie=cookie_header(cookie.value, name="sid"))
    assert again.json() == {"count": 2}


async def test_read_only_request_does_not_rewrite_the_record(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    client = make_client()
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    path = store._locate(cookie.session_id)[1]
    before = os.stat(path)
    with open(path, "rb") as file:
        content = file.read()
    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {"count": 1}
    assert "set-cookie" not in response.headers
    after = os.stat(path)
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    with open(path, "rb") as file:
        assert file.read() == content


async def test_login_regenerate_changes_id_keeps_data_and_retires_old_cookie(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    old = session_set_cookie(await client.get("/count"))
    assert old is not None
    response = await client.post("/login", cookie=cookie_header(old.value))
    assert response.json() == {"count": 1, "user": "alice"}
    new = session_set_cookie(response)
    assert new is not None and new.value
    assert new.session_id != old.session_id
    response = await client.get("/read", cookie=cookie_header(new.value))
    assert response.json() == {"count": 1, "user": "alice"}
    # The old cookie leads to a fresh empty session, never to the logged-in one.
    response = await client.get("/read", cookie=cookie_header(old.value))
    assert response.json() == {}
    response = await client.get("/count", cookie=cookie_header(old.value))
    assert response.json() == {"count": 1}
    fresh = session_set_cookie(response)
    assert fresh is not None
    assert fresh.session_id not in (old.session_id, new.session_id)


async def test_logout_invalidate_clears_cookie_and_removes_record(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    client = make_client()
    cookie = session_set_cookie(await client.get("/count"))
    assert cookie is not None
    path = store._locate(cookie.session_id)[1]
    assert os.path.exists(path)
    response = await client.post("/logout", cookie=cookie_header(cookie.value))
    assert response.status_code == 200
    cleared = session_set_cookie(response)
    assert cleared is not None and cleared.clears
    assert not os.path.exists(path)
    response = await client.get("/read", cookie=cookie_header(cookie.value))
    assert response.json() == {}
