"""Old session stores written by the real libraries, and sessionguard stores to migrate into.

`seed(kind, datas)` makes the old backend store one session per dict in `datas`, the way
that backend does it in production (Django's `SessionStore().save()`, a Flask app with
Flask-Session answering requests, Beaker's `Session.save()`, `pickle.dump` into a
directory), and returns a `Legacy` with each session's cookie value and the data the old
backend itself reads back for it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import flask
import pytest
from cachelib.file import FileSystemCache

from sessionguard.migrate import DEFAULT_COOKIE_NAMES, MigrationReport, open_source, run_migration
from sessionguard.sources import DEFAULT_MAX_AGE, LegacyReader
from sessionguard.stores import FileStore, Store
from sessionguard.stores.sql import SQLStore

from .apps import FRAMEWORKS, AppClient, Framework

_T = TypeVar("_T")

ALL_KINDS = ("django-file", "django-db", "flask-session", "beaker-file", "pickle-dir")
PICKLE_KINDS = ("flask-session", "beaker-file", "pickle-dir")
SAMPLES: list[dict[str, Any]] = [
    {"user_id": 42, "cart": [1, 2, 3], "name": "Zoë"},
    {"user_id": 7, "flags": {"beta": True}, "theme": "dark"},
]
# Beaker rewrites this on every load, so it is the one key two reads may disagree on.
_VOLATILE = {"beaker-file": {"_accessed_time"}}


@dataclass
class Legacy:
    """An old store with sessions in it, and how to read it."""

    kind: str
    source: str
    sessions: dict[str, dict[str, Any]]  # cookie value -> the data the old backend reads
    record_paths: dict[str, Path] = field(default_factory=dict)  # cookie value -> its file
    cookie_name: str = ""
    django_secret_key: str | None = None

    def __post_init__(self) -> None:
        self.cookie_name = self.cookie_name or DEFAULT_COOKIE_NAMES[self.kind]

    @property
    def trust_pickle(self) -> bool:
        return self.kind in PICKLE_KINDS

    def migrate(self, target: Store, **options: Any) -> MigrationReport:
        options.setdefault("trust_pickle", self.trust_pickle)
        options.setdefault("django_secret_key", self.django_secret_key)
        return run_migration(self.kind, self.source, target, **options)

    def open(self, **options: Any) -> LegacyReader:
        options.setdefault("trust_pickle", self.trust_pickle)
        options.setdefault("django_secret_key", self.django_secret_key)
        return open_source(self.kind, self.source, **options)

    def comparable(self, data: dict[str, Any]) -> dict[str, Any]:
        """`data` without the keys the old backend rewrites on every read."""
        return {k: v for k, v in data.items() if k not in _VOLATILE.get(self.kind, set())}


class Seed(Protocol):
    def __call__(
        self, kind: str, datas: list[dict[str, Any]], lifetimes: list[int | None] | None = None
    ) -> Legacy: ...


# -- Django -------------------------------------------------------------------------------


@dataclass
class DjangoProject:
    secret_key: str
    database: Path


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> DjangoProject:
    """Django configured in code (settings.configure), its session table migrated."""
    return _in_thread(_configure_django, tmp_path_factory)


def _configure_django(tmp_path_factory: pytest.TempPathFactory) -> DjangoProject:
    from django.conf import settings

    from tests.django_engine.project.testing import configure_in_process

    # One Django configuration per test process, shared with the engine's tests.
    configure_in_process(tmp_path_factory.mktemp("django"))
    name = str(settings.DATABASES["default"]["NAME"])
    return DjangoProject(settings.SECRET_KEY, Path(name))


def _seed_django(
    kind: str,
    directory: Path,
    project: DjangoProject,
    datas: list[dict[str, Any]],
    lifetimes: list[int | None],
    monkeypatch: pytest.MonkeyPatch,
) -> Legacy:
    from django.contrib.sessions.backends.db import (
        SessionStore as DBSessionStore,
    )
    from django.contrib.sessions.backends.file import (
        SessionStore as FileSessionStore,
    )
    from django.contrib.sessions.models import Session as SessionModel
    from django.db import connections

    if kind == "django-file":
        directory.mkdir()
        # The file backend caches SESSION_FILE_PATH on the class; point it at this test's dir.
        monkeypatch.setattr(FileSessionStore, "_storage_path", str(directory), raising=False)
        store_class, source = FileSessionStore, str(directory)
    else:
        SessionModel.objects.all().delete()
        store_class, source = DBSessionStore, str(project.database)
    legacy = Legacy(kind, source, {}, django_secret_key=project.secret_key)
    for data, lifetime in zip(datas, lifetimes, strict=True):
        session = store_class()
        session.update(data)
        if lifetime is not None:
            session.set_expiry(lifetime)
        session.save()
        key = session.session_key
        legacy.sessions[key] = dict(store_class(session_key=key).load())
        legacy.record_paths[key] = directory / f"sessionid{key}"
    connections.close_all()
    return legacy


# -- Flask-Session --------------------------------------------------------------------------


def flask_session_app(
    directory: Path, lifetime: int | None, backend: str = "cachelib", use_signer: bool = False
) -> flask.Flask:
    """A Flask app with Flask-Session storing sessions in `directory` (cachelib files)."""
    from flask_session import Session as FlaskSession  # type: ignore[import-untyped]

    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "flask-secret"
    if lifetime is not None:
        app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=lifetime)
    app.config["SESSION_USE_SIGNER"] = use_signer
    if backend == "cachelib":
        app.config["SESSION_TYPE"] = "cachelib"
        app.config["SESSION_CACHELIB"] = FileSystemCache(str(directory), threshold=500)
    else:
        app.config["SESSION_TYPE"] = "filesystem"
        app.config["SESSION_FILE_DIR"] = str(directory)
    with warnings.catch_warnings():
        # Flask-Session 0.8 deprecates the filesystem backend (the same files, written via
        # cachelib) and SESSION_USE_SIGNER; both are still what older apps run.
        warnings.simplefilter("ignore", DeprecationWarning)
        FlaskSession(app)

    @app.post("/seed")
    def seed() -> str:
        flask.session.update(flask.request.get_json())
        return "ok"

    @app.get("/read")
    def read() -> dict[str, Any]:
        return dict(flask.session)

    return app


def seed_flask_session(
    directory: Path,
    datas: list[dict[str, Any]],
    lifetimes: list[int | None],
    backend: str = "cachelib",
) -> Legacy:
    legacy = Legacy("flask-session", str(directory), {})
    for data, lifetime in zip(datas, lifetimes, strict=True):
        client = flask_session_app(directory, lifetime, backend).test_client()
        assert client.post("/seed", json=data).status_code == 200
        cookie = client.get_cookie("session")
        assert cookie is not None
        read = client.get("/read").get_json()
        assert isinstance(read, dict)
        legacy.sessions[cookie.value] = read
        name = hashlib.sha256(f"session:{cookie.value}".encode()).hexdigest()
        legacy.record_paths[cookie.value] = directory / name
    return legacy


# -- Beaker and the pickle directory --------------------------------------------------------


def _seed_beaker(
    directory: Path, datas: list[dict[str, Any]], lifetimes: list[int | None]
) -> Legacy:
    from beaker.session import Session as BeakerSession  # type: ignore[import-untyped]

    legacy = Legacy("beaker-file", str(directory), {})
    for data, lifetime in zip(datas, lifetimes, strict=True):
        session = BeakerSession({}, type="file", data_dir=str(directory))
        session.update(data)
        if lifetime is not None:  # last seen long enough ago to have `lifetime` left
            session["_accessed_time"] = time.time() - DEFAULT_MAX_AGE + lifetime
        session.save()
        reread = BeakerSession({}, id=session.id, type="file", data_dir=str(directory))
        legacy.sessions[session.id] = dict(reread)
        path = directory / "container_file" / session.id[:1] / session.id[:2]
        legacy.record_paths[session.id] = path / f"{session.id}.cache"
    return legacy


def _seed_pickles(
    directory: Path, datas: list[dict[str, Any]], lifetimes: list[int | None]
) -> Legacy:
    directory.mkdir()
    legacy = Legacy("pickle-dir", str(directory), {})
    for data, lifetime in zip(datas, lifetimes, strict=True):
        session_id = secrets.token_hex(16)
        path = directory / session_id
        with open(path, "wb") as file:  # the naive store: one pickle per session
            pickle.dump(data, file)
        if lifetime is not None:
            modified = time.time() - DEFAULT_MAX_AGE + lifetime
            os.utime(path, (modified, modified))
        legacy.sessions[session_id] = dict(data)
        legacy.record_paths[session_id] = path
    return legacy


@pytest.fixture
def seed(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Seed:
    def make(
        kind: str, datas: list[dict[str, Any]], lifetimes: list[int | None] | None = None
    ) -> Legacy:
        spans = lifetimes or [None] * len(datas)
        directory = tmp_path / f"old-{kind}"
        if kind.startswith("django"):
            project: DjangoProject = request.getfixturevalue("django_project")
            return _in_thread(_seed_django, kind, directory, project, datas, spans, monkeypatch)
        if kind == "flask-session":
            return seed_flask_session(directory, datas, spans)
        if kind == "beaker-file":
            return _seed_beaker(directory, datas, spans)
        return _seed_pickles(directory, datas, spans)

    return make


def _in_thread(func: Callable[..., _T], *args: Any) -> _T:
    """Run `func` in a thread of its own: Django refuses ORM calls under a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func, *args).result()


@pytest.fixture(params=ALL_KINDS)
def legacy(request: pytest.FixtureRequest, seed: Seed) -> Legacy:
    """Each old backend, holding the two SAMPLES sessions."""
    kind: str = request.param
    return seed(kind, SAMPLES)


# -- where sessions go ----------------------------------------------------------------------


@pytest.fixture(params=["file", "sqlite"], ids=["FileStore", "SQLStore-sqlite"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The sessionguard store migrated into (and served from)."""
    store: Store
    if request.param == "file":
        store = FileStore(tmp_path / "sessions", durable=False)
    else:
        store = SQLStore(f"sqlite:///{tmp_path / 'sessions.db'}")
    yield store
    await store.aclose()


@pytest.fixture(params=FRAMEWORKS, ids=["asgi-starlette", "wsgi-flask"])
def framework(request: pytest.FixtureRequest) -> Framework:
    value: Framework = request.param
    return value


ClientFactory = Callable[..., AppClient]


@pytest.fixture
async def make_client(framework: Framework) -> AsyncIterator[ClientFactory]:
    """Build `framework`'s app over a store with a `LegacyCookie`; closed at teardown."""
    from .apps import build_client

    made: list[AppClient] = []

    def make(*args: Any, **kwargs: Any) -> AppClient:
        client = build_client(framework, *args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def files_state(root: Path) -> dict[str, tuple[bytes, float]]:
    """Every file under `root` with its bytes and mtime, to prove nothing was written."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
