"""Django configured in this process (see `project.testing`), and a user to log in as."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .project.testing import configure_in_process

USERNAME = "alice"
PASSWORD = "correct horse"


@pytest.fixture(scope="session", autouse=True)
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("django-project")
    configure_in_process(directory)
    return directory


@pytest.fixture(scope="session")
def user(django_project: Path) -> str:
    """A user named `USERNAME` with `PASSWORD`, created once."""
    from django.contrib.auth.models import User

    if not User.objects.filter(username=USERNAME).exists():
        User.objects.create_user(USERNAME, password=PASSWORD)
    return USERNAME


@pytest.fixture
def settings_override() -> Iterator[object]:
    """`override_settings` as a fixture: `settings_override(SESSION_COOKIE_AGE=10)`."""
    from django.test import override_settings

    active: list[override_settings] = []

    def apply(**changes: object) -> None:
        override = override_settings(**changes)
        override.enable()
        active.append(override)

    yield apply
    for override in reversed(active):
        override.disable()
