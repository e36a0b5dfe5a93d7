"""Django's sessions on sessionguard: `request.session`, `login()`, `logout()`, messages
and `CSRF_USE_SESSIONS`, with changed-key merge, the corruption policy and 503 on an
outage.

```python
# settings.py
SESSION_ENGINE = "sessionguard.django"
SESSIONGUARD_STORE = BASE_DIR / "sessions"   # or a Redis / SQLAlchemy URL, "django://default"
MIDDLEWARE = [
    ...,
    "sessionguard.django.SessionMiddleware",  # in place of Django's SessionMiddleware
    ...,
]
```

`SessionStore` (the engine) and `SessionMiddleware` are the two pieces; see
`sessionguard.django.config` for the settings. Only this package imports Django.
"""

from __future__ import annotations

import django

if django.VERSION < (5, 1):  # pragma: no cover - the test group installs a newer one
    raise ImportError(
        "sessionguard.django needs Django 5.1 or later (the async SessionBase API); "
        f"this is {django.get_version()}: pip install 'sessionguard[django]'"
    )

from .middleware import SessionMiddleware  # after the version check
from .store import SessionStore

__all__ = ["SessionMiddleware", "SessionStore"]
