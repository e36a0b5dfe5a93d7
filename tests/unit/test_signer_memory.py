"""`Signer.unsign` remembers values that verified, and only those, within a bound."""

from __future__ import annotations

from sessionguard import cookie
from sessionguard.cookie import Signer, new_id


def test_a_verified_value_is_remembered_and_a_forged_one_never() -> None:
    signer = Signer("k" * 32)
    session_id = new_id()
    good = signer.sign(session_id)
    forged = session_id + "." + "A" * 43
    assert signer.unsign(good) == session_id
    assert signer.unsign(forged) is None
    assert signer._verified == {good: session_id}


def test_what_one_key_verified_is_not_trusted_by_a_signer_of_another() -> None:
    value = Signer("old-key-" * 4).sign(new_id())
    assert Signer("old-key-" * 4).unsign(value) is not None
    assert Signer("new-key-" * 4).unsign(value) is None  # each Signer remembers its own


def test_the_memory_is_bounded() -> None:
    signer = Signer("k" * 32)
    values = [signer.sign(new_id()) for _ in range(cookie._VERIFIED_MAX + 10)]
    for value in values:
        assert signer.unsign(value) is not None
    assert len(signer._verified) <= cookie._VERIFIED_MAX
    assert all(signer.unsign(value) is not None for value in values)  # still verifies
