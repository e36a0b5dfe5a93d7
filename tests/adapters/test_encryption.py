"""`cipher=` through the real middlewares: nothing readable at rest, keys that rotate without
logging anyone out, and a record under an unknown key handled as corrupt."""

from __future__ import annotations

from pathlib import Path

from sessionguard.cipher import RecordCipher
from sessionguard.codec import decode, record_keys
from sessionguard.events import Event, EventKind
from sessionguard.stores.file import FileStore

from .apps import SECRET, CountingFileStore, cookie_header, session_set_cookie
from .conftest import ClientFactory

OLD, NEW, STRANGER = (RecordCipher.new_key() for _ in range(3))


def stored_bytes(store: FileStore) -> list[bytes]:
    """Every file the store holds, index files included."""
    return [p.read_bytes() for p in Path(store.directory).rglob("*") if p.is_file()]


def record_of(store: FileStore, session_id: str) -> bytes:
    record = store.load(session_id)
    assert record is not None
    return record.payload


async def log_in(client_factory: ClientFactory, cipher: RecordCipher) -> tuple[str, str]:
    client = client_factory(cipher=cipher)
    first = session_set_cookie(await client.get("/count"))
    assert first is not None
    logged_in = session_set_cookie(await client.post("/login", cookie=cookie_header(first.value)))
    assert logged_in is not None
    return logged_in.value, logged_in.session_id


async def test_a_session_is_unreadable_at_rest_and_read_back_by_the_app(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    cookie, _ = await log_in(make_client, RecordCipher([NEW]))

    read = await make_client(cipher=RecordCipher([NEW])).get("/read", cookie=cookie_header(cookie))

    assert read.json() == {"count": 1, "user": "alice"}
    assert all(b"alice" not in raw for raw in stored_bytes(store))


async def test_rotating_keys_logs_no_one_out_and_rewrites_with_the_new_key(
    make_client: ClientFactory, store: CountingFileStore
) -> None:
    cookie, session_id = await log_in(make_client, RecordCipher([OLD]))
    rotated = make_client(cipher=RecordCipher([NEW, OLD]))

    assert (await rotated.get("/read", cookie=cookie_header(cookie))).json()["user"] == "alice"
    await rotated.get("/count", cookie=cookie_header(cookie))  # a write: the new key now

    keys = record_keys([SECRET.encode()])
    envelope = decode(record_of(store, session_id), keys=keys, cipher=RecordCipher([NEW]))
    assert envelope.data == {"count": 2, "user": "alice"}


async def test_a_record_under_a_key_the_app_does_not_have_is_corrupt_and_starts_afresh(
    make_client: ClientFactory,
) -> None:
    cookie, _ = await log_in(make_client, RecordCipher([STRANGER]))
    seen: list[Event] = []
    client = make_client(cipher=RecordCipher([NEW]), hooks=[seen.append])

    read = await client.get("/read", cookie=cookie_header(cookie))

    assert read.status_code == 200 and read.json() == {}
    assert [e.reason for e in seen if e.kind == EventKind.CORRUPT] == ["unknown_key"]
