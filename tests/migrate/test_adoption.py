"""A user with only the old backend's cookie keeps their session across the switch.

Each old store is written by the real library; the app being switched to is a real
Starlette (ASGI) or Flask (WSGI) app behind sessionguard with `legacy=LegacyCookie(...)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from sessionguard.legacy import LegacyCookie, legacy_key
from sessionguard.migrate import open_source
from sessionguard.record import decode_record
from sessionguard.stores import Record, Store

from .apps import NEW_COOKIE, cookie_value, is_cleared, set_cookies
from .conftest import ClientFactory, Legacy, Seed, files_state, flask_session_app

# Flask-Session files are named by a hash of the id, so its migrated records cannot be found
# from the cookie by the core yet (see test_migrated_flask_session_is_adopted_by_cookie).
ADOPTABLE_AFTER_MIGRATION = ("django-file", "django-db", "beaker-file", "pickle-dir")


class CountingLoads:
    """A real store that notes every key loaded through it, sync or async."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.loads: list[str] = []

    def load(self, key: str) -> Record | None:
        self.loads.append(key)
        return self.inner.load(key)

    async def aload(self, key: str) -> Record | None:
        self.loads.append(key)
        return await self.inner.aload(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _adopt_and_check(
    legacy: Legacy, cookie: str, client_factory: ClientFactory, store: Store, source: bool
) -> str:
    """One request with only the legacy cookie: same data, new cookie, old one cleared."""
    legacy_cookie = LegacyCookie(legacy.cookie_name, source=legacy.open() if source else None)
    client = client_factory(store, legacy_cookie)
    response = await client.get("/read", {legacy.cookie_name: cookie})
    assert response.status_code == 200
    assert legacy.comparable(response.json()) == legacy.comparable(legacy.sessions[cookie])
    cookies = set_cookies(response)
    assert is_cleared(cookies[legacy.cookie_name])
    new_cookie = cookie_value(cookies[NEW_COOKIE])
    assert new_cookie and "Max-Age=0" not in cookies[NEW_COOKIE]

    # The next request carries only the new cookie, and sees (and can change) the data.
    again = await client.get("/visit", {NEW_COOKIE: new_cookie})
    assert legacy.comparable(again.json()) == {
        **legacy.comparable(legacy.sessions[cookie]),
        "visits": 1,
    }
    return new_cookie


@pytest.mark.parametrize("kind", ADOPTABLE_AFTER_MIGRATION)
async def test_migrated_session_is_adopted_from_the_legacy_cookie_alone(
    kind: str, seed: Seed, target: Store, make_client: ClientFactory
) -> None:
    legacy = seed(kind, [{"user_id": 42, "cart": [1, 2, 3], "name": "Zoë"}, {"user_id": 7}])
    report = legacy.migrate(target)
    assert (report.copied, report.undecodable, report.skipped_expired) == (2, 0, 0)

    cookie = next(iter(legacy.sessions))
    await _adopt_and_check(legacy, cookie, make_client, target, source=False)

    # The migrated copy went with the adoption, replaced by a marker that remembers the old
    # id was adopted: the old cookie cannot be adopted twice.
    marker = target.load(legacy_key(legacy.cookie_name, cookie))
    assert marker is not None
    remembered = decode_record(marker)
    assert remembered.moved_to is not None and remembered.data == {}
    client = make_client(target, LegacyCookie(legacy.cookie_name))
    replay = await client.get("/read", {legacy.cookie_name: cookie})
    assert replay.json() == {}
    assert NEW_COOKIE not in set_cookies(replay)
    # The other user's migrated session is untouched until they come back.
    other = list(legacy.sessions)[1]
    assert target.load(legacy_key(legacy.cookie_name, other)) is not None


async def test_read_only_source_adopts_without_migration_and_writes_nothing_old(
    legacy: Legacy, target: Store, make_client: ClientFactory
) -> None:
    before = files_state(_old_root(legacy))
    cookie = next(iter(legacy.sessions))

    await _adopt_and_check(legacy, cookie, make_client, target, source=True)

    assert files_state(_old_root(legacy)) == before


async def test_unknown_legacy_cookie_starts_an_empty_session_and_clears_it(
    legacy: Legacy, target: Store, make_client: ClientFactory
) -> None:
    client = make_client(target, LegacyCookie(legacy.cookie_name, source=legacy.open()))
    response = await client.get("/read", {legacy.cookie_name: "nosuchsession0000000000000000000"})
    assert response.json() == {}
    assert is_cleared(set_cookies(response)[legacy.cookie_name])


async def test_corrupt_record_in_the_read_only_source_starts_an_empty_session(
    seed: Seed, target: Store, make_client: ClientFactory
) -> None:
    legacy = seed("pickle-dir", [{"user_id": 42}])
    cookie = next(iter(legacy.sessions))
    path = legacy.record_paths[cookie]
    path.write_bytes(path.read_bytes()[:5])
    client = make_client(target, LegacyCookie(legacy.cookie_name, source=legacy.open()))

    response = await client.get("/read", {legacy.cookie_name: cookie})

    assert response.status_code == 200
    assert response.json() == {}


async def test_signed_beaker_cookie_is_adopted_from_the_read_only_source(
    target: Store, make_client: ClientFactory, seed: Seed
) -> None:
    from beaker.session import Session as BeakerSession  # type: ignore[import-untyped]

    legacy = seed("beaker-file", [{"user_id": 1}])
    data_dir = legacy.source
    signed = BeakerSession({}, type="file", data_dir=data_dir, secret="beaker-secret")
    signed["user_id"] = 99
    signed.save()
    # With `secret`, the cookie Beaker sets is an HMAC hex digest followed by the id.
    header = signed.request["cookie_out"].strip()
    value = header.split(";", 1)[0].split("=", 1)[1]
    assert value.endswith(signed.id) and len(value) == 40 + len(signed.id)
    client = make_client(target, LegacyCookie(legacy.cookie_name, source=legacy.open()))

    response = await client.get("/read", {legacy.cookie_name: value})

    assert response.json()["user_id"] == 99


async def test_signed_flask_session_cookie_is_adopted_from_the_read_only_source(
    tmp_path: Path, target: Store, make_client: ClientFactory
) -> None:
    directory = tmp_path / "flask"
    old_app = flask_session_app(directory, None, use_signer=True).test_client()
    old_app.post("/seed", json={"user_id": 5})
    cookie = old_app.get_cookie("session")
    assert cookie is not None and "." in cookie.value  # "<sid>.<signature>"
    source = open_source("flask-session", directory, trust_pickle=True)
    client = make_client(target, LegacyCookie("session", source=source))

    response = await client.get("/read", {"session": cookie.value})

    assert response.json() == {"_permanent": True, "user_id": 5}


async def test_migrated_flask_session_is_adopted_by_cookie(
    seed: Seed, target: Store, make_client: ClientFactory
) -> None:
    legacy = seed("flask-session", [{"user_id": 42}])
    assert legacy.migrate(target).copied == 1
    cookie = next(iter(legacy.sessions))
    # The record is there, under the id the reader maps the cookie to ...
    reader = legacy.open()
    assert target.load(legacy_key(legacy.cookie_name, reader.record_id(cookie))) is not None
    client = make_client(target, LegacyCookie(legacy.cookie_name, record_id=reader.record_id))

    response = await client.get("/read", {legacy.cookie_name: cookie})

    # ... and adoption finds it through the same mapping.
    assert response.json() == legacy.sessions[cookie]


async def test_legacy_cookie_with_the_same_name_as_the_new_one_is_adopted(
    seed: Seed, target: Store, make_client: ClientFactory
) -> None:
    legacy = seed("flask-session", [{"user_id": 42}])
    cookie = next(iter(legacy.sessions))
    client = make_client(
        target, LegacyCookie("session", source=legacy.open()), session_cookie="session"
    )

    response = await client.get("/read", {"session": cookie})

    assert response.json() == legacy.sessions[cookie]
    # One Set-Cookie for the name: the new signed value, not a clearing one after it.
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1 and not is_cleared(headers[0])


async def test_a_replayed_old_cookie_is_never_adopted_again_even_with_source_and_logout(
    legacy: Legacy, target: Store, make_client: ClientFactory
) -> None:
    """The old store is read-only, so only sessionguard can remember an adoption: a
    replayed old cookie must not make a second copy of the user's data, not even after the
    user logged out of the adopted session."""
    cookie = next(iter(legacy.sessions))
    new_cookie = await _adopt_and_check(legacy, cookie, make_client, target, source=True)
    client = make_client(target, LegacyCookie(legacy.cookie_name, source=legacy.open()))

    replay = await client.get("/read", {legacy.cookie_name: cookie})
    assert replay.json() == {}
    assert NEW_COOKIE not in set_cookies(replay)

    await client.get("/logout", {NEW_COOKIE: new_cookie})
    replay = await client.get("/visit", {legacy.cookie_name: cookie})
    assert replay.json() == {"visits": 1}  # a fresh session, none of the old data


async def test_a_forged_value_of_our_own_cookie_name_reaches_no_store(
    seed: Seed, target: Store, make_client: ClientFactory
) -> None:
    """With a legacy cookie of the same name, a value shaped like ours that fails its
    signature is a forgery, not an old backend's id: neither store sees it."""
    legacy = seed("flask-session", [{"user_id": 42}])
    looked_up: list[str] = []
    source = legacy.open()

    class Watching:
        def load(self, legacy_id: str) -> Mapping[str, Any] | None:
            looked_up.append(legacy_id)
            return source.load(legacy_id)

    watched = CountingLoads(target)
    client = make_client(
        cast(Store, watched), LegacyCookie("session", source=Watching()), session_cookie="session"
    )
    forged = "0123456789abcdef0123456789abcdef01234567." + "A" * 43

    response = await client.get("/read", {"session": forged})

    assert response.status_code == 200 and response.json() == {}
    assert looked_up == [] and watched.loads == []


def _old_root(legacy: Legacy) -> Path:
    source = Path(legacy.source)
    return source if source.is_dir() else source.parent
