"""uvicorn's entry point: `uvicorn project.asgi:application` from `tests/django_engine`."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_asgi_application()
