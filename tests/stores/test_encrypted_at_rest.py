"""With `cipher=`, no store holds a readable byte of a session: every backend of the store
contract, through the core's own flows, sync and async."""

from __future__ import annotations

from typing import Any

from sessionguard.cipher import RecordCipher
from sessionguard.driver import run_async, run_sync
from sessionguard.ops import Flow
from sessionguard.options import build_core
from sessionguard.session import Session
from sessionguard.stores import Store

from .test_contract import StoreAPI, api, pytest_generate_tests, store

__all__ = ["api", "pytest_generate_tests", "store"]

MARKER = "a-value-that-must-never-be-stored-in-the-clear"


async def test_the_store_holds_only_ciphertext_and_the_session_reads_back(api: StoreAPI) -> None:
    store: Store = api.store
    core = build_core("encrypted-at-rest", cipher=RecordCipher([RecordCipher.new_key()]))

    async def drive(flow: Flow[Any]) -> Any:
        if api.mode == "sync":
            return run_sync(flow, store)
        return await run_async(flow, store)

    session = await drive(core.open(None))
    assert isinstance(session, Session)
    session["secret"] = MARKER
    cookie = (await drive(core.commit(session)))[0].split(";", 1)[0]

    record = store.load(session._sg.id)
    assert record is not None and MARKER.encode() not in record.payload
    again = await drive(core.open(cookie))
    assert isinstance(again, Session) and again["secret"] == MARKER
