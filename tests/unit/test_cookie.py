"""Session ids, signed cookie values, Cookie header parsing and Set-Cookie attributes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sessionguard.cookie import CookieSettings, Signer, new_id, read_cookie, read_cookies
from sessionguard.errors import ConfigurationError

SIGNED_RE = re.compile(r"[0-9a-f]{40}\.[A-Za-z0-9_-]{43}")


# -- ids ---------------------------------------------------------------------------------


def test_new_id_is_160_bits_of_lowercase_hex() -> None:
    session_id = new_id()
    assert re.fullmatch(r"[0-9a-f]{40}", session_id)
    assert len(bytes.fromhex(session_id)) * 8 == 160


def test_new_ids_differ() -> None:
    assert len({new_id() for _ in range(1000)}) == 1000


# -- signing -----------------------------------------------------------------------------


def test_sign_then_unsign_returns_the_id() -> None:
    signer = Signer("secret")
    session_id = new_id()
    value = signer.sign(session_id)
    assert SIGNED_RE.fullmatch(value)
    assert value.startswith(session_id + ".")
    assert signer.unsign(value) == session_id


def test_bytes_secret_key_signs_like_the_same_str_key() -> None:
    session_id = new_id()
    assert Signer(b"secret").sign(session_id) == Signer("secret").sign(session_id)


def test_different_keys_sign_differently_and_refuse_each_other() -> None:
    session_id = new_id()
    value = Signer("one").sign(session_id)
    assert Signer("two").sign(session_id) != value
    assert Signer("two").unsign(value) is None


def test_rotation_signs_with_first_key_and_accepts_every_listed_key() -> None:
    session_id = new_id()
    old_cookie = Signer("old").sign(session_id)
    rotated = Signer(["new", "old"])

    assert rotated.sign(session_id) == Signer("new").sign(session_id)
    assert rotated.unsign(old_cookie) == session_id
    assert rotated.unsign(rotated.sign(session_id)) == session_id


def test_cookie_signed_with_retired_key_is_refused() -> None:
    session_id = new_id()
    old_cookie = Signer("old").sign(session_id)
    assert Signer(["new", "old"]).unsign(old_cookie) == session_id
    assert Signer(["newer", "new"]).unsign(old_cookie) is None


@pytest.mark.parametrize("secret", ["", b"", [], ["ok", ""], [""]])
def test_empty_secret_key_raises_configuration_error(secret: str | bytes | list[str]) -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        Signer(secret)


_ID = "0123456789abcdef0123456789abcdef01234567"
_GOOD = Signer("secret").sign(_ID)
_SIG = _GOOD.split(".")[1]


def _flip_last_signature_char(value: str) -> str:
    return value[:-1] + ("A" if value[-1] != "A" else "B")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_flip_last_signature_char(_GOOD), id="forged-signature"),
        pytest.param(Signer("attacker").sign(_ID), id="signed-with-other-key"),
        pytest.param(f"{'f' * 40}.{_SIG}", id="signature-of-another-id"),
        pytest.param(_ID, id="unsigned-bare-id"),
        pytest.param(_ID + ".", id="empty-signature"),
        pytest.param(_GOOD[:-1], id="short-signature"),
        pytest.param(_GOOD + "A", id="long-signature"),
        pytest.param("%%garbled%%!!", id="garbled"),
        pytest.param(_GOOD + "x" * 10_240, id="10KB"),
        pytest.param("x" * 10_240, id="10KB-junk"),
        pytest.param("../../etc/passwd", id="path-traversal"),
        pytest.param(f"../../etc/passwd.{_SIG}", id="path-traversal-with-signature"),
        pytest.param(_GOOD[:10] + "\x00" + _GOOD[11:], id="nul-inside"),
        pytest.param(_GOOD + "\x00", id="nul-after"),
        pytest.param("é" * 40 + "." + _SIG, id="non-ascii-id"),
        pytest.param(_ID[:-1] + "\u0661." + _SIG, id="arabic-indic-digit"),
        pytest.param(_GOOD.replace(".", "\u2024"), id="non-ascii-dot"),
        pytest.param(" " + _GOOD, id="leading-space"),
        pytest.param(_GOOD + "\n", id="trailing-newline"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_cookie_value_unsigns_to_none(value: str) -> None:
    assert Signer("secret").unsign(_GOOD) == _ID  # the untampered cookie is accepted
    assert Signer("secret").unsign(value) is None


def test_uppercase_hex_id_is_refused_even_with_a_valid_signature_of_it() -> None:
    signer = Signer("secret")
    upper = _ID.upper()
    assert signer.unsign(signer.sign(upper)) is None
    assert signer.unsign(signer.sign(_ID)) == _ID


# -- the Cookie request header -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("session=abc", "abc"),
        ("theme=dark; session=abc; lang=en", "abc"),
        ("theme=dark;session=abc", "abc"),
        ('session="abc"', "abc"),
        ("  session  =  abc  ; lang=en", "abc"),
        ("broken; session=abc", "abc"),
        ("=orphan; session=abc", "abc"),
        ("session=a=b", "a=b"),
        ("session=first; session=second", "first"),
        ("session=", ""),
        ("mysession=abc; session_id=def", None),
        ("theme=dark", None),
        ("session", None),
        ("", None),
        (None, None),
    ],
)
def test_read_cookie_finds_the_named_value(header: str | None, expected: str | None) -> None:
    assert read_cookie(header, "session") == expected


def test_read_cookie_uses_the_configured_name() -> None:
    assert read_cookie("session=one; sid=two", "sid") == "two"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("session=first; session=second", ["first", "second"]),
        # gunicorn joins two Cookie header lines with ", " (RFC 7230's rule for repeats).
        ("theme=dark; session=first, lang=en; session=second", ["first", "second"]),
        ("session=only,session=two", ["only", "two"]),
        ("theme=dark", []),
        (None, []),
    ],
)
def test_read_cookies_finds_every_value_separated_by_semicolons_or_commas(
    header: str | None, expected: list[str]
) -> None:
    assert read_cookies(header, "session") == expected


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"https_only": False}, "https_only=True"),
        ({"https_only": True, "path": "/app"}, "path='/'"),
        ({"https_only": True, "domain": "example.com"}, "no domain"),
    ],
)
def test_a_host_prefixed_cookie_must_keep_the_prefix_rules(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        CookieSettings(name="__Host-session", **options)


def test_a_host_prefixed_cookie_is_secure_host_only_and_rooted() -> None:
    header = CookieSettings(name="__Host-session", https_only=True).set_header("V")

    assert header.startswith("__Host-session=V;")
    attributes = _attributes(header)
    assert "secure" in attributes and "path=/" in attributes
    assert not any(a.startswith("domain") for a in attributes)


def test_a_secure_prefixed_cookie_needs_https_only() -> None:
    with pytest.raises(ConfigurationError, match="__Secure-"):
        CookieSettings(name="__Secure-session")
    assert "secure" in _attributes(
        CookieSettings(name="__Secure-s", https_only=True).set_header("V")
    )


# -- Set-Cookie --------------------------------------------------------------------------


def _attributes(header: str) -> list[str]:
    """The attributes, lower-cased: browsers read their names in any case."""
    return [part.strip().lower() for part in header.split(";")[1:]]


def test_default_set_header_has_httponly_lax_path_and_max_age() -> None:
    header = CookieSettings().set_header("VALUE")
    assert header.startswith("session=VALUE;")
    attributes = _attributes(header)
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert f"max-age={14 * 24 * 60 * 60}" in attributes
    assert "secure" not in attributes
    assert not any(attribute.startswith("domain=") for attribute in attributes)


def test_https_only_adds_secure() -> None:
    assert "secure" in _attributes(CookieSettings(https_only=True).set_header("v"))


def test_same_site_none_implies_secure() -> None:
    attributes = _attributes(CookieSettings(same_site="none").set_header("v"))
    assert "samesite=none" in attributes
    assert "secure" in attributes


def test_same_site_strict_is_sent_as_configured() -> None:
    assert "samesite=strict" in _attributes(CookieSettings(same_site="strict").set_header("v"))


def test_name_path_and_domain_are_used() -> None:
    header = CookieSettings(name="sid", path="/app", domain="example.com").set_header("v")
    assert header.startswith("sid=v;")
    assert "path=/app" in _attributes(header)
    assert "domain=example.com" in _attributes(header)


def test_max_age_none_makes_a_browser_session_cookie() -> None:
    header = CookieSettings(max_age=None).set_header("v")
    assert "Max-Age" not in header
    assert "Expires" not in header


def test_clear_header_expires_the_cookie_with_the_same_attributes() -> None:
    settings = CookieSettings(name="sid", path="/app", domain="example.com", https_only=True)
    header = settings.clear_header()
    assert header.startswith("sid=;")
    attributes = _attributes(header)
    assert "max-age=0" in attributes
    assert "expires=thu, 01 jan 1970 00:00:00 gmt" in attributes
    for expected in ("path=/app", "domain=example.com", "httponly", "secure", "samesite=lax"):
        assert expected in attributes


@pytest.mark.parametrize(
    "name", ["", "my session", "a;b", "a=b", "sess\x00", "séssion", "a,b", '"q"', "a\tb"]
)
def test_invalid_cookie_name_raises_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError, match="session_cookie"):
        CookieSettings(name=name)


@pytest.mark.parametrize("same_site", ["Lax", "", "always", "None"])
def test_invalid_same_site_raises_configuration_error(same_site: str) -> None:
    with pytest.raises(ConfigurationError, match="same_site"):
        CookieSettings(same_site=same_site)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["", "app", "/; Domain=evil.example", "/a\r\nX-Evil: 1"])
def test_path_that_would_break_the_header_raises_configuration_error(path: str) -> None:
    with pytest.raises(ConfigurationError, match="path"):
        CookieSettings(path=path)


@pytest.mark.parametrize("domain", ["example.com; SameSite=None", "exa mple.com", "a\r\nb"])
def test_domain_that_would_break_the_header_raises_configuration_error(domain: str) -> None:
    with pytest.raises(ConfigurationError, match="domain"):
        CookieSettings(domain=domain)


@pytest.mark.parametrize("domain", ["example.com", ".example.com", "localhost", "127.0.0.1"])
def test_ordinary_domains_are_accepted(domain: str) -> None:
    assert f"domain={domain}" in CookieSettings(domain=domain).set_header("v")


def test_max_age_zero_or_negative_means_what_it_means_in_starlette() -> None:
    assert "Max-Age=-1" in CookieSettings(max_age=-1).set_header("v")
    assert "Max-Age" not in CookieSettings(max_age=0).set_header("v")


def test_attributes_are_spelt_as_starlette_spells_them() -> None:
    header = CookieSettings(domain=".example.com", https_only=True).set_header("v")
    assert header == (
        "session=v; path=/; Max-Age=1209600; httponly; samesite=lax; secure; domain=.example.com"
    )
