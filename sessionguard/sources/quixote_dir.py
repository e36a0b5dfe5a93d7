"""Quixote's session3 `DirectorySessionStore`: one pickled session object per file, named
by its session id (the value of Quixote's session cookie).

Each file is a pickle of the whole session object, so unpickling needs `trust_pickle` and
the app's session class importable (its module on `sys.path`, as when the app runs): a
file whose class cannot be found counts as undecodable. The object's state (instance
attributes, and a `DictSession`'s items) becomes the record `sessionguard.quixote`'s
`SessionGuardStore` reads, and `migrate` copies it under the session id itself, so a user
keeps their session when the app switches stores. The deadline is the file's mtime +
`max_age` (DirectorySessionStore keeps none).
"""

from __future__ import annotations

import re

from ..objectstate import as_data, fields_of, pack
from .base import LegacyRecord, SkipRecord, unpickle
from .pickled import PickleDirReader

__all__ = ["QuixoteDirReader"]

# session3's ids are `secrets.token_urlsafe(8)`; anything a store key may be is accepted.
# No leading dot, so temp files and dotfiles are skipped.
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


class QuixoteDirReader(PickleDirReader):
    """A session3 `DirectorySessionStore` directory; its records keep their session ids."""

    kind = "quixote-dir"
    keeps_ids = True
    names = _ID_RE

    def _read(self, name: str) -> LegacyRecord:
        raw, modified = self.read_file(self.directory / name)
        expires_at = modified + self.max_age
        if expires_at <= self.clock():
            return LegacyRecord(name, {}, expires_at)  # expired: not worth unpickling
        session = unpickle(raw)
        if isinstance(session, dict | list | str | bytes | int | float) or session is None:
            kind = type(session).__name__
            raise SkipRecord("not_a_session", f"holds a {kind}, not a session object")
        try:
            fields = fields_of(session)
            for field, value in fields.items():
                pack(field, value)
        except TypeError as exc:
            raise SkipRecord("unencodable", str(exc)) from exc
        return LegacyRecord(name, as_data(fields, modified), expires_at)
