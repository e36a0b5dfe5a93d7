"""Cookies that cannot be shadowed, under both adapters (issue 10, finding 5).

A browser sends two cookies of one name when a sibling subdomain (or another path) set
one too: `Cookie: session=<tossed>; session=<real>`. Every value is weighed: the first
that verifies is the session, and values that do not verify are neither looked up nor
cleared, so a tossed cookie can no longer log the user out on every visit.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette

from sessionguard import asgi, wsgi
from sessionguard.errors import ConfigurationError

from .apps import CountingFileStore, cookie_header, raw_wsgi_app, session_set_cookie
from .conftest import ClientFactory

TOSSED = "0123456789abcdef0123456789abcdef01234567." + "A" * 43  # our shape, wrong signature


async def test_a_tossed_cookie_before_the_real_one_neither_hides_nor_clears_it(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    client = make_client()
    real = session_set_cookie(await client.get("/count"))
    assert real is not None
    loads = store.loads

    for header in (
        f"session={TOSSED}; session={real.value}",
        f"session=garbage; session={real.value}",
        f"session={real.value}; session={TOSSED}",
    ):
        response = await client.get("/read", cookie=header)
        assert response.json() == {"count": 1}, header
        assert session_set_cookie(response) is None, f"{header}: the real cookie was touched"
    assert store.loads == loads + 3  # only the verified value was looked up, once a request


async def test_cookies_that_do_not_verify_are_rejected_and_left_alone(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    client = make_client()
    loads = store.loads

    response = await client.get("/read", cookie=f"session={TOSSED}; session=garbage")

    assert response.json() == {}
    assert session_set_cookie(response) is None  # not verified as ours: not ours to clear
    assert store.loads == loads  # neither value reached the store


async def test_a_host_prefixed_cookie_works_end_to_end(make_client: ClientFactory) -> None:
    client = make_client(session_cookie="__Host-session", https_only=True)

    created = session_set_cookie(await client.get("/count"), name="__Host-session")
    assert created is not None
    assert "secure" in created.attributes and created.attributes["path"] == "/"
    assert "domain" not in created.attributes
    again = await client.get("/count", cookie=cookie_header(created.value, "__Host-session"))
    assert again.json() == {"count": 2}


def test_a_host_prefixed_cookie_without_https_only_is_refused_at_start_up(
    store: CountingFileStore,
) -> None:
    # Built directly: Starlette builds its middleware stack only at the first request.
    with pytest.raises(ConfigurationError, match="__Host-"):
        asgi.SessionMiddleware(Starlette(), "secret", store=store, session_cookie="__Host-s")
    with pytest.raises(ConfigurationError, match="__Host-"):
        wsgi.SessionMiddleware(raw_wsgi_app([]), "secret", store=store, session_cookie="__Host-s")
