"""`HashedIds`: the names a store knows sessions and users by."""

from __future__ import annotations

import re

import pytest

from sessionguard.errors import ConfigurationError
from sessionguard.hashedids import HashedIds

TEXT_KEY = "a-text-key-with-at-least-32-characters"


def test_names_are_keyed_stable_and_never_the_id() -> None:
    ids = HashedIds(TEXT_KEY)
    name = ids.of_session("3f" * 20)

    assert re.fullmatch(r"[0-9a-f]{64}", name) and "3f" * 20 not in name
    assert name == HashedIds(TEXT_KEY).of_session("3f" * 20)
    assert name != HashedIds(TEXT_KEY + "!").of_session("3f" * 20)


def test_a_session_and_a_user_with_the_same_id_get_different_names() -> None:
    ids = HashedIds(HashedIds.new_key())
    assert ids.of_session("42") != ids.of_user("42")


@pytest.mark.parametrize("key", ["short", b"sixteen bytes!!!", b"x" * 33])
def test_a_weak_or_misshapen_key_is_refused_at_start_up(key: bytes | str) -> None:
    with pytest.raises(ConfigurationError, match="HashedIds"):
        HashedIds(key)


def test_its_repr_never_shows_the_key() -> None:
    assert TEXT_KEY not in repr(HashedIds(TEXT_KEY))
