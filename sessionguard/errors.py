"""The exceptions sessionguard raises.

```
SessionGuardError
├── ConfigurationError     a bad argument, or an optional extra that is not installed
├── CorruptSessionError    stored bytes failed the envelope's check or could not be decoded
├── StoreUnavailableError  the store could not be read or written: outage, full disk, permissions
├── ConflictError          compare-and-swap kept losing to concurrent writers
├── SessionTooLargeError   a session's encoded size is over `max_size` (answered 413)
└── SessionRefusedError    Django's `request.session` could not be opened or saved; the
                           middleware answers with the policy's response (503, 400, ...)
```

Outage and corruption never mix: a store that cannot be reached raises
`StoreUnavailableError`, and only bytes that were read and failed their check
raise `CorruptSessionError`. The middleware answers the first with a 503 and
hands the second to the `CorruptionPolicy`.
"""

from __future__ import annotations

import enum

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "CorruptReason",
    "CorruptSessionError",
    "SessionGuardError",
    "SessionRefusedError",
    "SessionTooLargeError",
    "StoreUnavailableError",
]


class SessionGuardError(Exception):
    """Base class of every error sessionguard raises on purpose."""


class ConfigurationError(SessionGuardError, ValueError):
    """An argument is invalid, or a store needs an extra that is not installed."""


class CorruptReason(enum.StrEnum):
    """Why stored bytes were rejected; also the label used in logs and events."""

    EMPTY = "empty"
    TRUNCATED = "truncated"
    BAD_MAGIC = "bad_magic"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    LEGACY_PICKLE = "legacy_pickle"
    UNDECODABLE = "undecodable"
    #: Intact, but signed by none of the secret keys: forged, or the key was retired.
    BAD_SIGNATURE = "bad_signature"
    #: Intact but unsigned (sessionguard 0.1, or forged), and unsigned records are refused.
    UNSIGNED = "unsigned"
    #: `FileStore` found a FIFO, socket, device, directory or symbolic link, never read.
    NOT_A_FILE = "not_a_file"
    #: `FileStore` found a file larger than its `max_record_size`, never read.
    OVERSIZED = "oversized"
    #: Intact, but encrypted with a key the cipher does not have (or with no cipher set).
    UNKNOWN_KEY = "unknown_key"


class CorruptSessionError(SessionGuardError):
    """Stored session bytes failed the envelope's integrity check or could not be decoded."""

    def __init__(self, reason: CorruptReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"corrupt session record ({reason}): {detail}")


class StoreUnavailableError(SessionGuardError):
    """The session store could not be read or written.

    Raised for outages, full disks, permission errors and read-only databases.
    The previous session data is left as it was.
    """


class ConflictError(SessionGuardError):
    """Concurrent writers kept changing the session while this request tried to save it.

    The middleware answers with a 503 so the client can retry; nothing is lost silently.
    """


class SessionTooLargeError(SessionGuardError, ValueError):
    """A session's encoded size is over the middleware's `max_size`.

    Raised while saving; the middleware answers 413 and the stored session is left as it
    was. Keep large data (uploads, caches) out of the session, or raise `max_size`.
    """


class SessionRefusedError(SessionGuardError):
    """The session could not be opened or saved where the app itself asked for it.

    Raised by `sessionguard.django.SessionStore` inside a view (the first read of
    `request.session`, `save()`, `cycle_key()`, ...) when the store is unavailable
    (`status` 503), the corruption policy rejects the record (400), the session is too
    large (413) or was regenerated meanwhile (409). The stored data is as it was;
    `sessionguard.django.SessionMiddleware` sends the policy's response, whatever the
    view did with the exception.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)
