"""sessionguard: crash-safe, merge-on-conflict server-side sessions for WSGI and ASGI apps."""

from __future__ import annotations

from .asgi import SessionMiddleware as ASGISessionMiddleware
from .codec import Envelope, decode, encode
from .errors import (
    ConfigurationError,
    ConflictError,
    CorruptReason,
    CorruptSessionError,
    SessionGuardError,
    SessionTooLargeError,
    StoreUnavailableError,
)
from .policy import CorruptionEvent, CorruptionPolicy
from .session import Session
from .stores import AsyncStore, FileStore, MemoryStore, Record, Store, SyncStore
from .wsgi import SessionMiddleware as WSGISessionMiddleware

__version__ = "0.2.0"

__all__ = [
    "ASGISessionMiddleware",
    "AsyncStore",
    "ConfigurationError",
    "ConflictError",
    "CorruptReason",
    "CorruptSessionError",
    "CorruptionEvent",
    "CorruptionPolicy",
    "Envelope",
    "FileStore",
    "MemoryStore",
    "Record",
    "Session",
    "SessionGuardError",
    "SessionTooLargeError",
    "Store",
    "StoreUnavailableError",
    "SyncStore",
    "WSGISessionMiddleware",
    "decode",
    "encode",
]
