"""`UserSessions`: a user's sessions, for "show my active sessions", "log out my other
devices" and "log out everywhere".

The middleware must be told which session key names the user (`user_key=`, the key the
app's login sets), and then keeps a per-user index in the store, changed in the same
atomic step as each record:

```python
app.add_middleware(SessionMiddleware, secret_key=..., store=store, user_key="user_id")
users = UserSessions(store, secret_key=..., user_key="user_id")

users.sessions("42")                        # [UserSession(session="3f2a...", ...), ...]
users.revoke("42")                          # log out everywhere: how many were ended
users.revoke("42", keep=request.session)    # log out my other devices
users.end("42", "3f2a9c1b0d4e")             # log out that device
```

Every method has an `a`-prefixed twin for async code (on the store's async API).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .byuser import UserSession
from .codec import Cipher
from .cookie import SecretKey
from .driver import run_async, run_sync
from .events import Hook
from .hashedids import HashedIds
from .options import build_core, require_user_index
from .session import Session
from .stores.base import BaseStore

__all__ = ["UserSession", "UserSessions"]


class UserSessions:
    """The sessions of each user in `store`, as the middleware with the same `secret_key`,
    `user_key` (and `cipher`, `hashed_ids`) wrote them. `hooks` receive a `revoked` event
    per session ended."""

    def __init__(
        self,
        store: BaseStore,
        secret_key: SecretKey,
        *,
        user_key: str,
        hooks: Sequence[Hook] = (),
        cipher: Cipher | None = None,
        hashed_ids: HashedIds | None = None,
    ) -> None:
        self.store = store
        self.core = build_core(
            secret_key, user_key=user_key, hooks=hooks, cipher=cipher, hashed_ids=hashed_ids
        )
        require_user_index(self.core, store)

    def sessions(self, user: str) -> list[UserSession]:
        """The user's live sessions, oldest first."""
        return run_sync(self.core.sessions_of_user(str(user)), self.store, self.core.events)

    async def asessions(self, user: str) -> list[UserSession]:
        return await run_async(self.core.sessions_of_user(str(user)), self.store, self.core.events)

    def revoke(self, user: str, *, keep: Session | str | None = None) -> int:
        """End the user's sessions, but the one `keep` names; return how many were ended.
        Their requests in flight cannot bring them back, and their responses clear the
        cookie.

        `keep`: the current request's `Session`, its cookie value (Django's
        `request.session.session_key`), or a `UserSession.session` hash.
        """
        flow = self.core.revoke_user(str(user), keep=self._hash_of(keep))
        return run_sync(flow, self.store, self.core.events)

    async def arevoke(self, user: str, *, keep: Session | str | None = None) -> int:
        flow = self.core.revoke_user(str(user), keep=self._hash_of(keep))
        return await run_async(flow, self.store, self.core.events)

    def hash_of(self, session: Session | str) -> str:
        """The hash `sessions()` shows for `session` (the current request's `Session`, or
        its cookie value): to tell the current session apart in the user's list."""
        return _named(self._hash_of(session))

    def end(self, user: str, session: Session | str) -> bool:
        """End one of the user's sessions ("log out that device" in their list), named as
        `keep` names one; whether it was ended (not if it is not, or no longer, theirs)."""
        flow = self.core.revoke_user(str(user), only=_named(self._hash_of(session)))
        return run_sync(flow, self.store, self.core.events) == 1

    async def aend(self, user: str, session: Session | str) -> bool:
        flow = self.core.revoke_user(str(user), only=_named(self._hash_of(session)))
        return await run_async(flow, self.store, self.core.events) == 1

    def _hash_of(self, keep: Session | str | None) -> str | None:
        if keep is None or (isinstance(keep, str) and _HASH.fullmatch(keep)):
            return keep
        if isinstance(keep, Session):
            # The stored record it came from: a regenerate() earlier in this request has
            # already moved its id, and the listed one must still count as current.
            loaded = keep._sg.loaded
            return self.core.name_of(loaded.key if loaded is not None else keep._sg.id)
        key = self.core.signer.unsign(keep)
        if key is None:
            raise ValueError(
                "keep= names no session: pass the current Session, its cookie value, or a "
                "session hash as sessions() shows it"
            )
        return self.core.name_of(key)


def _named(hashed: str | None) -> str:
    if hashed is None:  # pragma: no cover - only keep=None gives None
        raise ValueError("end() needs the session to end")
    return hashed


#: A session hash as `UserSession.session` shows it (`key_hash`).
_HASH = re.compile(r"[0-9a-f]{12}")
