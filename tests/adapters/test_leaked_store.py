"""A leaked copy of the store, through the real middlewares: with `cipher=` and
`hashed_ids=`, no file name and no byte of the store directory holds a session id (the
one thing a thief could replay as a cookie), a user id, or a device; the app and
`UserSessions`, holding the keys, still read everything."""

from __future__ import annotations

from pathlib import Path

from sessionguard.cipher import RecordCipher
from sessionguard.hashedids import HashedIds
from sessionguard.users import UserSessions

from .apps import SECRET, CountingFileStore, cookie_header, session_set_cookie
from .conftest import ClientFactory

CIPHER = RecordCipher([RecordCipher.new_key()])
IDS = HashedIds(HashedIds.new_key())


def leaked(store: CountingFileStore) -> bytes:
    """Every path and every byte under the store's directory, as a copy of it would hold."""
    root = Path(store.directory)
    found = []
    for path in sorted(root.rglob("*")):
        found.append(str(path.relative_to(root)).encode())
        if path.is_file():
            found.append(path.read_bytes())
    return b"\n".join(found)


async def test_a_copy_of_the_store_holds_no_id_no_user_and_no_device(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    client = make_client(user_key="user", cipher=CIPHER, hashed_ids=IDS, record_devices=True)
    ids: list[str] = []
    for _ in range(2):  # two devices of alice
        first = session_set_cookie(await client.get("/count"))
        assert first is not None
        login = await client.post("/login", cookie=cookie_header(first.value))
        logged_in = session_set_cookie(login)
        assert logged_in is not None
        ids += [first.session_id, logged_in.session_id]
        read = await client.get("/read", cookie=cookie_header(logged_in.value))
        assert {k: read.json()[k] for k in ("count", "user")} == {"count": 1, "user": "alice"}

    copy = leaked(store)

    assert copy.count(b"\n") > 4  # records, their owners and the user's index entries
    for session_id in ids:
        assert session_id.encode() not in copy
    for secret in (b"alice", b"python-httpx", b"127.0.0", b"count"):
        assert secret not in copy
    users = UserSessions(store, SECRET, user_key="user", cipher=CIPHER, hashed_ids=IDS)
    listed = users.sessions("alice")
    assert len(listed) == 2 and all(s.user_agent and "httpx" in s.user_agent for s in listed)
