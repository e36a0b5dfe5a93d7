"""Fixtures for the adapter tests: a real `FileStore` in `tmp_path` and apps behind httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Protocol, Unpack

import pytest

from sessionguard.options import SessionOptions

from .apps import SECRET, AnyStore, AppClient, CountingFileStore, Framework, build_client


class ClientFactory(Protocol):
    def __call__(
        self,
        *,
        store: AnyStore | None = None,
        secret_key: str | Sequence[str] = SECRET,
        framework: Framework | None = None,
        **options: Unpack[SessionOptions],
    ) -> AppClient: ...


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def store(store_dir: Path) -> Iterator[CountingFileStore]:
    file_store = CountingFileStore(store_dir)
    yield file_store
    file_store.close()


@pytest.fixture(params=["starlette", "flask"], ids=["asgi-starlette", "wsgi-flask"])
def framework(request: pytest.FixtureRequest) -> Framework:
    """The app under test; test_asgi.py and test_wsgi.py override it with their own pair."""
    value: Framework = request.param
    return value


@pytest.fixture
async def make_client(
    store: CountingFileStore, framework: Framework
) -> AsyncIterator[ClientFactory]:
    """Build `framework`'s app over `store` (unless told otherwise) behind an httpx client."""
    made: list[AppClient] = []

    def make(
        *,
        store: AnyStore | None = None,
        secret_key: str | Sequence[str] = SECRET,
        framework: Framework | None = None,
        **options: Unpack[SessionOptions],
    ) -> AppClient:
        client = build_client(
            framework if framework is not None else default_framework,
            store if store is not None else default_store,
            secret_key,
            **options,
        )
        made.append(client)
        return client

    default_store, default_framework = store, framework
    yield make
    for client in made:
        await client.aclose()
