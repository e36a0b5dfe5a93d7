"""Readers of the session stores people leave, for `sessionguard.migrate`.

```
DjangoFileReader     Django's file backend: <dir>/<cookie name><session key>
DjangoDBReader       Django's db backend: the django_session table (SQLite file or URL)
FlaskSessionReader   Flask-Session's filesystem/cachelib store: <dir>/<sha256 of key>
BeakerFileReader     Beaker's file sessions: <data_dir>/container_file/<i>/<id>/<id>.cache
PickleDirReader      a directory of pickled dicts named by session id
QuixoteDirReader     Quixote session3's DirectorySessionStore: pickled session objects
```

Each one iterates the stored sessions (`scan`, or plain iteration) and loads one by its
cookie value, read-only (`load`), which makes it a `LegacySource`.
"""

from __future__ import annotations

from .base import DEFAULT_MAX_AGE, LegacyReader, LegacyRecord, Undecodable
from .django import DjangoDBReader, DjangoFileReader
from .pickled import BeakerFileReader, FlaskSessionReader, PickleDirReader
from .quixote_dir import QuixoteDirReader

__all__ = [
    "DEFAULT_MAX_AGE",
    "BeakerFileReader",
    "DjangoDBReader",
    "DjangoFileReader",
    "FlaskSessionReader",
    "LegacyReader",
    "LegacyRecord",
    "PickleDirReader",
    "QuixoteDirReader",
    "Undecodable",
]
