"""Switching from another session backend without logging anyone out.

During a transition the middleware also accepts the old backend's cookie (Django's
`sessionid`, Flask-Session's `session`, Beaker's `beaker.session.id`). A request that
carries only that cookie is *adopted*: its data, found either among the records that
`sessionguard migrate` copied over or, read-only, in the old store itself, becomes a
new sessionguard session under a fresh signed id; the response sets the new cookie and
clears the old one.

```python
from sessionguard.legacy import LegacyCookie
app.add_middleware(SessionMiddleware, secret_key=..., legacy=LegacyCookie("sessionid"))
```

The old cookie is an unsigned id, trusted exactly as far as the old backend trusted it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .cookie import CookieSettings

__all__ = ["LegacyCookie", "LegacySource", "legacy_key"]

# What old backends use as ids (Django: [a-z0-9]{32}; Beaker, Flask-Session: hex or
# token_urlsafe). Anything else is not looked up.
_LEGACY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{8,256}")


@runtime_checkable
class LegacySource(Protocol):
    """The old backend's store, read-only: its session data for a cookie value, or `None`.

    `None` also for an undecodable record. Raise `StoreUnavailableError` if the old
    store cannot be reached. Called in a worker thread under ASGI, so it may block.
    """

    def load(self, legacy_id: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class LegacyCookie:
    """The old backend's cookie to accept during a transition, and where to find its data.

    `source` is an optional read-only fallback for sessions that were not migrated
    (see `sessionguard.migrate` for Django, Flask-Session, Beaker and pickle readers).
    `path` and `domain` must match the old cookie's, or browsers will not drop it.
    """

    name: str
    source: LegacySource | None = None
    path: str = "/"
    domain: str | None = None
    # Maps the cookie value to the id `migrate` keyed the record by (Flask-Session keeps only
    # a hash of the id on disk): pass `open_source(...).record_id`.
    record_id: Callable[[str], str] | None = None
    # How long the old backend kept a session (Django's SESSION_COOKIE_AGE is 14 days,
    # Flask's PERMANENT_SESSION_LIFETIME 31): an adopted old id is remembered this long,
    # so a replayed old cookie can never be adopted again while the old session could
    # still be valid.
    max_age: int = 31 * 24 * 60 * 60

    def clear_header(self) -> str:
        return CookieSettings(name=self.name, path=self.path, domain=self.domain).clear_header()

    def parse(self, value: str | None) -> str | None:
        return value if value is not None and _LEGACY_ID_RE.fullmatch(value) else None


def legacy_key(cookie_name: str, legacy_id: str) -> str:
    """The store key a migrated session is kept under, derived from its old cookie value.

    Migration and adoption both compute it, so no mapping table is needed; it is a hash
    so that an old id never becomes a sessionguard id.
    """
    digest = hashlib.sha256(f"{cookie_name}\0{legacy_id}".encode()).hexdigest()
    return f"legacy-{digest[:40]}"
