"""`Session`: a dict that records which keys this request set and deleted."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from sessionguard.session import Loaded, Session, apply_changes

LOADED = Loaded("a" * 40, version=7, created_at=100.0, expires_at=200.0)


def loaded_session(**data: object) -> Session:
    return Session(data, loaded=LOADED)


# -- dict behaviour ----------------------------------------------------------------------


def test_session_behaves_like_a_dict() -> None:
    session = loaded_session(user=42, theme="dark")

    assert session["user"] == 42
    assert session.get("missing") is None
    assert session.get("missing", "default") == "default"
    assert "theme" in session
    assert "missing" not in session
    assert len(session) == 2
    assert sorted(session) == ["theme", "user"]
    assert dict(session) == {"user": 42, "theme": "dark"}
    assert session == {"user": 42, "theme": "dark"}
    with pytest.raises(KeyError):
        session["missing"]


def test_update_pop_and_setdefault_are_tracked() -> None:
    session = loaded_session(user=42, theme="dark")

    session.update({"a": 1}, b=2)
    assert session.pop("theme") == "dark"
    assert session.pop("missing", None) is None
    assert session.setdefault("user", 0) == 42
    assert session.setdefault("c", 3) == 3

    assert dict(session) == {"user": 42, "a": 1, "b": 2, "c": 3}
    assert session._sg.set_keys == {"a", "b", "c"}
    assert session._sg.deleted_keys == {"theme"}


def test_clear_deletes_every_key() -> None:
    session = loaded_session(user=42, theme="dark")
    session.clear()
    assert len(session) == 0
    assert session._sg.deleted_keys == {"user", "theme"}
    assert session._sg.set_keys == set()
    assert session.modified


def test_deleting_a_missing_key_raises_key_error_and_tracks_nothing() -> None:
    session = loaded_session(user=42)
    with pytest.raises(KeyError):
        del session["missing"]
    assert not session.modified


def test_non_str_key_raises_type_error() -> None:
    session = Session()
    with pytest.raises(TypeError, match="session keys must be str"):
        session[1] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        session.update({b"bytes": 1})
    assert len(session) == 0
    assert not session.modified


# -- tracking ----------------------------------------------------------------------------


def test_fresh_and_loaded_sessions_start_unmodified() -> None:
    assert not Session().modified
    assert not loaded_session(user=42).modified


def test_reading_does_not_modify() -> None:
    session = loaded_session(cart=["a"])
    session["cart"].append("b")  # in-place changes are invisible by design
    _ = session.get("cart"), list(session), len(session), "cart" in session
    assert not session.modified


def test_set_then_delete_is_tracked_as_deleted() -> None:
    session = loaded_session(user=42)
    session["user"] = 43
    del session["user"]
    assert session._sg.set_keys == set()
    assert session._sg.deleted_keys == {"user"}
    assert session.modified


def test_delete_then_set_is_tracked_as_set() -> None:
    session = loaded_session(user=42)
    del session["user"]
    session["user"] = 43
    assert session._sg.set_keys == {"user"}
    assert session._sg.deleted_keys == set()


def test_assigning_the_same_value_still_counts_as_a_change() -> None:
    session = loaded_session(user=42)
    session["user"] = 42
    assert session._sg.set_keys == {"user"}


def test_modified_true_marks_every_key_as_set() -> None:
    session = loaded_session(user=42, cart=["a"])
    session["cart"].append("b")
    session.modified = True
    assert session.modified
    assert session._sg.set_keys == {"user", "cart"}


def test_modified_false_forgets_the_changes() -> None:
    session = loaded_session(user=42)
    session["a"] = 1
    del session["user"]
    session.modified = False
    assert not session.modified
    assert session._sg.set_keys == set() and session._sg.deleted_keys == set()


# -- identity ----------------------------------------------------------------------------


def test_new_session_has_a_fresh_id_and_loaded_one_keeps_its_key() -> None:
    new = Session()
    assert new.is_new
    assert re.fullmatch(r"[0-9a-f]{40}", new._sg.id)
    assert Session()._sg.id != new._sg.id
    loaded = loaded_session()
    assert not loaded.is_new
    assert loaded._sg.id == LOADED.key


def test_regenerate_changes_id_and_keeps_data() -> None:
    session = loaded_session(user=42)
    session.regenerate()
    assert session._sg.id != LOADED.key
    assert re.fullmatch(r"[0-9a-f]{40}", session._sg.id)
    assert dict(session) == {"user": 42}
    assert session._sg.regenerated
    assert session.modified


def test_invalidate_clears_data_and_changes_id() -> None:
    session = loaded_session(user=42)
    session["x"] = 1
    session.invalidate()
    assert session._sg.id != LOADED.key
    assert len(session) == 0
    assert session._sg.invalidated
    assert session._sg.set_keys == set() and session._sg.deleted_keys == set()


def test_keys_set_after_invalidate_belong_to_the_new_session() -> None:
    session = loaded_session(user=42)
    session.invalidate()
    session["flash"] = "logged out"
    assert dict(session) == {"flash": "logged out"}
    assert session._sg.set_keys == {"flash"}


def test_invalidate_after_regenerate_cancels_the_regeneration() -> None:
    session = loaded_session(user=42)
    session.regenerate()
    session.invalidate()
    assert not session._sg.regenerated
    assert session._sg.invalidated


def test_regenerate_after_invalidate_stays_a_plain_new_session() -> None:
    # There is no old id left to forward from; the core must create, not regenerate.
    session = loaded_session(user=42)
    session.invalidate()
    session.regenerate()
    assert session._sg.invalidated
    assert not session._sg.regenerated
    assert session._sg.id != LOADED.key


# -- read-only ---------------------------------------------------------------------------


def test_read_only_session_can_be_read() -> None:
    session = Session({"user": 42}, loaded=LOADED, read_only=True)
    assert session["user"] == 42
    assert dict(session) == {"user": 42}


@pytest.mark.parametrize(
    "needs_a_cookie",
    [
        pytest.param(lambda s: s.regenerate(), id="regenerate"),
        pytest.param(lambda s: s.invalidate(), id="invalidate"),
    ],
)
def test_a_websocket_session_refuses_what_needs_a_cookie(
    needs_a_cookie: Callable[[Session], object],
) -> None:
    session = Session({"user": 42}, loaded=LOADED, read_only=True)
    with pytest.raises(TypeError, match="websocket"):
        needs_a_cookie(session)
    assert dict(session) == {"user": 42}
    assert session._sg.id == LOADED.key
    assert not session.modified


@pytest.mark.parametrize(
    ("mutate", "set_keys", "deleted_keys", "after"),
    [
        pytest.param(lambda s: s.__setitem__("c", 3), {"c"}, set(), {"a": 1, "b": 2, "c": 3}),
        pytest.param(lambda s: s.__delitem__("a"), set(), {"a"}, {"b": 2}),
        pytest.param(
            lambda s: s.update({"a": 9}, c=3), {"a", "c"}, set(), {"a": 9, "b": 2, "c": 3}
        ),
        pytest.param(lambda s: s.__ior__({"c": 3}), {"c"}, set(), {"a": 1, "b": 2, "c": 3}),
        pytest.param(lambda s: s.setdefault("c", 3), {"c"}, set(), {"a": 1, "b": 2, "c": 3}),
        pytest.param(lambda s: s.setdefault("a", 3), set(), set(), {"a": 1, "b": 2}),
        pytest.param(lambda s: s.pop("a"), set(), {"a"}, {"b": 2}),
        pytest.param(lambda s: s.pop("missing", None), set(), set(), {"a": 1, "b": 2}),
        pytest.param(lambda s: s.popitem(), set(), {"b"}, {"a": 1}),
        pytest.param(lambda s: s.clear(), set(), {"a", "b"}, {}),
    ],
    ids=[
        "setitem",
        "delitem",
        "update",
        "ior",
        "setdefault-new",
        "setdefault-existing",
        "pop",
        "pop-missing",
        "popitem",
        "clear",
    ],
)
def test_every_mutating_dict_method_records_exactly_what_it_changed(
    mutate: Callable[[Session], object],
    set_keys: set[str],
    deleted_keys: set[str],
    after: dict[str, int],
) -> None:
    session = Session({"a": 1, "b": 2}, loaded=LOADED)
    mutate(session)
    assert (session._sg.set_keys, session._sg.deleted_keys) == (set_keys, deleted_keys)
    assert session == after
    assert session.modified == bool(set_keys or deleted_keys)


def test_a_session_is_a_real_dict_and_its_copies_are_plain_dicts() -> None:
    session = Session({"user": 42}, loaded=LOADED)
    assert isinstance(session, dict)
    assert json.dumps(session) == '{"user": 42}'
    copy = session.copy()
    copy["other"] = 1  # changing a copy is not a change of the session
    assert type(copy) is dict and not session.modified
    merged = session | {"x": 1}
    assert type(merged) is dict and not session.modified
    assert not session.accessed
    session.mark_accessed()
    assert session.accessed


# -- the merge rule ----------------------------------------------------------------------


def test_apply_changes_puts_this_requests_changes_on_a_newer_base() -> None:
    session = loaded_session(user=42, cart=["a"], theme="dark")
    session["cart"] = ["a", "b"]
    session["new"] = 1
    del session["theme"]

    base = {"user": 42, "cart": ["z"], "theme": "light", "other": "concurrent"}
    merged = apply_changes(session, base)

    assert merged == {"user": 42, "cart": ["a", "b"], "new": 1, "other": "concurrent"}
    assert base["theme"] == "light"  # the base is not mutated


def test_apply_changes_keeps_base_values_of_keys_this_request_only_read() -> None:
    session = loaded_session(user=42)
    assert apply_changes(session, {"user": 99}) == {"user": 99}


def test_apply_changes_ignores_deleting_a_key_the_base_no_longer_has() -> None:
    session = loaded_session(user=42)
    del session["user"]
    assert apply_changes(session, {"other": 1}) == {"other": 1}


def test_apply_changes_after_modified_true_writes_every_key() -> None:
    session = loaded_session(user=42, cart=["a"])
    session["cart"].append("b")
    session.modified = True
    assert apply_changes(session, {"user": 1, "cart": [], "x": 0}) == {
        "user": 42,
        "cart": ["a", "b"],
        "x": 0,
    }


@pytest.mark.parametrize(
    "value", [object(), complex(1, 2), {1: "int key"}, [print], float("nan")], ids=repr
)
def test_a_value_that_cannot_be_stored_is_refused_at_assignment_naming_key_and_type(
    value: object,
) -> None:
    session = Session({"user": 42}, loaded=LOADED)
    with pytest.raises(TypeError, match=r"'the_key' of type \w+ cannot be stored"):
        session["the_key"] = value
    with pytest.raises(TypeError, match="'other'"):
        session.update(other=value)
    assert session == {"user": 42} and not session.modified


def test_a_session_shows_the_app_only_what_a_session_user_uses() -> None:
    """Starlette's, Flask's and Django's users use the dict API, `modified`, `accessed`,
    the two security calls, the session's own lifetime (Django's `set_expiry`, Flask's
    `permanent`) and a name for its device; the middleware's bookkeeping is not theirs to
    see."""
    public = {name for name in dir(Session()) if not name.startswith("_")} - set(dir({}))
    assert public == {
        "accessed",
        "modified",
        "is_new",
        "read_only",
        "mark_accessed",
        "regenerate",
        "invalidate",
        "remember_me",
        "set_lifetime",
        "label_device",
    }
