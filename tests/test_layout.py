"""Imports run one way (adapters -> core -> stores, codec -> errors); no framework is imported."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sessionguard

PACKAGE = Path(sessionguard.__file__).parent

# A module may import only modules of a strictly lower layer (and stores only base and errors).
LAYERS = {
    "errors": 0,
    "types": 0,
    "values": 0,
    "devices": 0,
    "verdicts": 0,
    "codec": 1,
    "cipher": 1,
    "keymaterial": 0.5,
    "hashedids": 1,
    "purging": 3,
    "cookie": 1,
    "policy": 1,
    "stores.base": 1,
    "stores.frame": 1,
    "stores.filesafety": 1,
    "stores.cachedio": 0,
    "session": 2,
    "record": 2,
    "stores.memory": 2,
    "stores.filelayout": 1.5,
    "stores.filerecord": 1.7,
    "stores.fileowners": 1.75,
    "stores.filepurge": 1.8,
    "stores.file": 2,
    "stores.redisscripts": 0,
    "stores.redisnames": 1.5,
    "stores.redisclient": 1.6,
    "stores.sqlwait": 0,
    "stores.redis": 2,
    "stores.sql": 2,
    "stores": 3,
    "events": 1,
    "legacy": 2,
    "metrics": 2,
    "prometheus": 3,
    "quarantine": 2,
    "ops": 3,
    "target": 3,
    "decisions": 3,
    "corebase": 3.5,
    "lifetimes": 3.55,
    "ownership": 3.55,
    "byuser": 3.7,
    "opening": 3.7,
    "regenerating": 3.6,
    "committing": 3.7,
    "core": 4,
    "adoption": 4.5,
    "driver": 4,
    "options": 5,
    "users": 6,
    "wsgi": 6,
    "flask": 6,
    "asgi": 6,
    # Quixote's session3 store: an integration, like flask; nothing imports it.
    "objectstate": 1,
    "quixote": 6,
    # Django's engine: its settings, the SessionBase, the middleware, the package.
    "django.config": 6,
    "django.store": 7,
    "django.middleware": 8,
    "django": 9,
    # The readers of the stores people leave, and the migration that uses them.
    "sources.base": 4,
    "sources.django": 5,
    "sources.pickled": 5,
    "sources.quixote_dir": 5.5,
    "sources": 6,
    "migrate": 6,
    "": 7,  # the package root re-exports everything
    "scan": 4,
    "cliargs": 7.2,
    "usercommands": 7.5,
    "cli": 8,  # the `sessionguard` command, on top of everything
    "__main__": 9,
}
STORE_MAY_IMPORT = {
    "stores.base",
    "stores.frame",
    "stores.filesafety",
    "stores.cachedio",
    "stores.filelayout",
    "stores.filerecord",
    "stores.filepurge",
    "stores.fileowners",
    "stores.redisnames",
    "stores.redisclient",
    "stores.redisscripts",
    "stores.sqlwait",
    "verdicts",
    "errors",
}
FRAMEWORKS = {
    "starlette",
    "fastapi",
    "flask",
    "werkzeug",
    "django",
    "quart",
    "aiohttp",
    "session3",
    "quixote",
}
# Reading Django's sessions means checking their signatures with django.core.signing,
# imported lazily when a Django reader is created (only `sessionguard migrate` does that).
FRAMEWORK_READERS = {
    "sources.django": {"django"},
    "flask": {"flask"},
    "quixote": {"session3"},  # a session3 SessionStore
    "django.config": {"django"},
    "django.store": {"django"},
    "django.middleware": {"django", "asgiref"},
    "django": {"django"},  # the package checks Django's version before anything else
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """Return (sessionguard modules imported, top-level third-party packages imported)."""
    parts = module_name(path).split(".") if module_name(path) else []
    package = parts if path.name == "__init__.py" else parts[:-1]
    ours: set[str] = set()
    theirs: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1] if node.level > 1 else package
            if node.module:
                ours.add(".".join([*base, node.module]))
            else:  # `from . import frame`: each name is a module
                ours.update(".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            theirs.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            theirs.update(alias.name.split(".")[0] for alias in node.names)
    return ours, theirs


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p) or "__init__")
def test_imports_only_go_down_the_layers(path: Path) -> None:
    name = module_name(path)
    assert name in LAYERS, f"{name!r} is new: give it a layer in tests/test_layout.py"
    ours, _ = imports_of(path)
    for target in ours:
        assert target in LAYERS, f"{name} imports unknown module {target!r}"
        assert LAYERS[target] < LAYERS[name], f"{name} must not import {target} (imports go down)"
        if name.startswith("stores."):
            assert target in STORE_MAY_IMPORT, f"store {name} may only import {STORE_MAY_IMPORT}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p) or "__init__")
def test_no_framework_is_imported(path: Path) -> None:
    _, theirs = imports_of(path)
    allowed = FRAMEWORK_READERS.get(module_name(path), set())
    assert not theirs & FRAMEWORKS - allowed, f"{module_name(path)} imports a web framework"


def test_every_exported_name_exists() -> None:
    for name in sessionguard.__all__:
        assert hasattr(sessionguard, name), name
    assert sorted(sessionguard.__all__) == sessionguard.__all__


@pytest.mark.parametrize("name", [n for n in LAYERS if n])
def test_every_module_declares_all(name: str) -> None:
    module = importlib.import_module(f"sessionguard.{name}")
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"sessionguard.{name} has no __all__"
    for item in exported:
        assert hasattr(module, item), f"sessionguard.{name}.__all__ lists missing {item!r}"
