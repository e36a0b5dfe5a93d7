"""The pickle-based stores: Flask-Session (cachelib files), Beaker file sessions, a pickle dir.

Every reader here unpickles, which runs whatever code a file names, so each one refuses
to start without `trust_pickle=True` (see `PickleReader`). The formats are read from
the files directly; Flask-Session, cachelib and Beaker need not be installed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack

from .base import (
    DEFAULT_MAX_AGE,
    LegacyRecord,
    PickleReader,
    SkipRecord,
    Undecodable,
    as_session,
    existing_dir,
    unpickle,
)

__all__ = ["BeakerFileReader", "FlaskSessionReader", "PickleDirReader"]

_CACHELIB_NAME_RE = re.compile(r"[0-9a-f]{64}")
# cachelib's own bookkeeping file (the item count), stored like an item under this key.
_CACHELIB_COUNT_FILE = hashlib.sha256(b"__wz_cache_count").hexdigest()
_CACHELIB_HEADER = struct.Struct("I")  # cachelib packs the expiry in native byte order


class FlaskSessionReader(PickleReader):
    """Flask-Session's `filesystem` and `cachelib` backends (a cachelib `FileSystemCache`).

    cachelib names each file by the SHA-256 of `key_prefix + sid` and writes a 4-byte
    expiry (0 = never, then `max_age` from now applies) followed by a pickle of the
    stored value: the session dict in Flask-Session 0.8, or its msgpack/JSON
    serialization. Only the hash is on disk, so `scan` reports the hash as the
    `legacy_id`, and `record_id` maps a cookie value to it.
    """

    kind = "flask-session"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        trust_pickle: bool,
        key_prefix: str = "session:",
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = existing_dir(directory, "the FileSystemCache or SESSION_FILE_DIR")
        super().__init__(trust_pickle=trust_pickle, max_age=max_age, clock=clock)
        self.key_prefix = key_prefix  # SESSION_KEY_PREFIX

    def record_id(self, cookie_value: str) -> str:
        # With SESSION_USE_SIGNER the cookie is "<sid>.<signature>" (token_urlsafe ids have
        # no dot). The sid alone is the unguessable part, so it is looked up unverified,
        # exactly as an unsigned cookie would be.
        sid = cookie_value.split(".", 1)[0]
        return hashlib.sha256(f"{self.key_prefix}{sid}".encode()).hexdigest()

    def scan(self) -> Iterator[LegacyRecord | Undecodable]:
        for name in sorted(os.listdir(self.directory)):
            # Skips cachelib's temp files (*.__wz_cache) and its count file.
            if _CACHELIB_NAME_RE.fullmatch(name) and name != _CACHELIB_COUNT_FILE:
                yield from self.scan_one(name, self._read, name)

    def fetch(self, cookie_value: str) -> LegacyRecord | None:
        try:
            return self._read(self.record_id(cookie_value))
        except FileNotFoundError:
            return None

    def _read(self, name: str) -> LegacyRecord:
        raw, _ = self.read_file(self.directory / name)
        if len(raw) < _CACHELIB_HEADER.size:
            reason = "truncated" if raw else "empty"
            raise SkipRecord(reason, f"{len(raw)} byte(s): no expiry header")
        (deadline,) = _CACHELIB_HEADER.unpack_from(raw)
        expires_at = float(deadline) if deadline else self.clock() + self.max_age
        if expires_at <= self.clock():
            return LegacyRecord(name, {}, expires_at)  # expired: not worth unpickling
        value = unpickle(raw[_CACHELIB_HEADER.size :])
        if isinstance(value, bytes):
            value = _serialized(value)
        return LegacyRecord(name, as_session(value), expires_at)


def _serialized(value: bytes) -> Any:
    """Flask-Session's `MsgSpecSerializer` output: msgpack by default, else JSON."""
    try:
        return msgpack.unpackb(value, raw=False, strict_map_key=False)
    except Exception:  # any msgpack parse error: try the JSON format next
        pass
    try:
        return json.loads(value)
    except ValueError as exc:
        raise SkipRecord("undecodable", "the stored bytes are neither msgpack nor JSON") from exc


_BEAKER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_HEX40_RE = re.compile(r"[0-9a-f]{40}")


class BeakerFileReader(PickleReader):
    """Beaker's `type="file"` sessions (`beaker.container.FileNamespaceManager`).

    Each session is `<data_dir>/container_file/<id[0]>/<id[:2]>/<id>.cache`: a pickled
    namespace dict whose "session" entry is the session dict serialized and base64
    encoded (`data_serializer` "pickle", the default, or "json", zlib-compressed).
    Sessions encrypted with `encrypt_key` cannot be read: they count as undecodable.
    The deadline is `_accessed_time` + `max_age` (Beaker's `timeout`).
    """

    kind = "beaker-file"

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        trust_pickle: bool,
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        root = existing_dir(data_dir, "Beaker's session.data_dir")
        self.directory = root / "container_file" if (root / "container_file").is_dir() else root
        super().__init__(trust_pickle=trust_pickle, max_age=max_age, clock=clock)

    def _path(self, session_id: str) -> Path:
        # beaker.util.encoded_path(..., depth=3) as Session calls it, digest_filenames=False.
        ident = session_id.replace(".", "")
        return self.directory / ident[:1] / ident[:2] / f"{ident}.cache"

    def scan(self) -> Iterator[LegacyRecord | Undecodable]:
        for path in sorted(self.directory.glob("*/*/*.cache")):
            session_id = path.name.removesuffix(".cache")
            if _BEAKER_ID_RE.fullmatch(session_id) and path == self._path(session_id):
                yield from self.scan_one(session_id, self._read, path)

    def fetch(self, cookie_value: str) -> LegacyRecord | None:
        candidates = [cookie_value]
        if len(cookie_value) > 40 and _HEX40_RE.fullmatch(cookie_value[:40]):
            # With `secret`, Beaker's cookie is an HMAC-SHA1 hex digest, then the id. The
            # id alone is unguessable, so it is looked up unverified, like unsigned ones.
            candidates.append(cookie_value[40:])
        for session_id in candidates:
            if _BEAKER_ID_RE.fullmatch(session_id.replace(".", "")):
                try:
                    return self._read(self._path(session_id))
                except FileNotFoundError:
                    continue
        return None

    def _read(self, path: Path) -> LegacyRecord:
        raw, modified = self.read_file(path)
        namespace = unpickle(raw)
        if not isinstance(namespace, dict):
            kind = type(namespace).__name__
            raise SkipRecord("not_a_session", f"holds a {kind}, not a Beaker namespace")
        stored = namespace.get("session")
        data = as_session(stored if isinstance(stored, dict) else _beaker_decode(stored))
        accessed = data.get("_accessed_time")
        last = accessed if isinstance(accessed, int | float) else modified
        return LegacyRecord(path.name.removesuffix(".cache"), data, float(last) + self.max_age)


def _beaker_decode(stored: object) -> Any:
    """`Session._decrypt_data` without a key: base64, then pickle or zlib-compressed JSON."""
    if stored is None:
        return {}  # the namespace is there but its session was emptied
    if not isinstance(stored, bytes | str):
        raise SkipRecord("not_a_session", f"the session entry is a {type(stored).__name__}")
    try:
        serialized = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SkipRecord("undecodable", "not base64 (encrypted with encrypt_key?)") from exc
    if serialized[:1] == b"\x78":  # a zlib stream: data_serializer="json"
        try:
            return json.loads(zlib.decompress(serialized))
        except (zlib.error, ValueError) as exc:
            raise SkipRecord("undecodable", f"compressed JSON did not decode: {exc}") from exc
    if serialized[:1] != b"\x80":  # PickleSerializer writes protocol 2
        raise SkipRecord("undecodable", "neither pickle nor JSON (encrypted with encrypt_key?)")
    return unpickle(serialized)


# File names a cookie could carry; no leading dot, so temp files and dotfiles are skipped.
_PICKLE_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{7,255}")


class PickleDirReader(PickleReader):
    """A directory of pickled dicts, each file named by its session id; mtime + `max_age`."""

    kind = "pickle-dir"
    #: The file names a cookie could carry (its session ids); others are passed over.
    names = _PICKLE_ID_RE

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        trust_pickle: bool,
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = existing_dir(directory, "the session directory")
        super().__init__(trust_pickle=trust_pickle, max_age=max_age, clock=clock)

    def scan(self) -> Iterator[LegacyRecord | Undecodable]:
        for name in sorted(os.listdir(self.directory)):
            if self.names.fullmatch(name) and (self.directory / name).is_file():
                yield from self.scan_one(name, self._read, name)

    def fetch(self, cookie_value: str) -> LegacyRecord | None:
        if not self.names.fullmatch(cookie_value):
            return None
        try:
            return self._read(cookie_value)
        except FileNotFoundError:
            return None

    def _read(self, name: str) -> LegacyRecord:
        raw, modified = self.read_file(self.directory / name)
        return LegacyRecord(name, as_session(unpickle(raw)), modified + self.max_age)
