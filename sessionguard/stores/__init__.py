"""Session stores: they move opaque bytes, a version and an expiry deadline; never the codec."""

from __future__ import annotations

from .base import AsyncStore, Record, Store, SyncStore
from .file import FileStore
from .memory import MemoryStore

__all__ = ["AsyncStore", "FileStore", "MemoryStore", "Record", "Store", "SyncStore"]
