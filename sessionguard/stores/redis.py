"""`RedisStore`: one Redis hash per session, expiry as the key's TTL, compare-and-swap in Lua.

Each session is a single key `<prefix><id>` holding a hash `{v: version, p: payload,
e: deadline}` (the deadline kept exactly, and also set as the key's expiry). Every
operation is one round trip: the compare-and-swap, the deletes, the load and `touch`
are Lua scripts, which Redis runs atomically. `touch` moves the deadline and the key's
expiry and does not rewrite the body.

A session that belongs to a user (`indexes_users`) also has `o: the user id` and `u: the
name of the user's set` in its hash, and is a member (by its key's name) of that set,
`<prefix>user:<blake2b of the user id>` (hashed: a user id may be anything, and never
becomes part of a key name). The script that writes the record changes the sets in the
same atomic step, so concurrent writers never leave a set disagreeing with the hashes.
A record that Redis expires by its TTL leaves its name in the set: `sessions_of` drops
such names when it meets them, and `purge_expired` sweeps every set. The sets are keys
of their own, which scripts reach without declaring them: this does not work on Redis
Cluster (where a script may only touch keys of one slot, given in KEYS) until the keys
share a hash tag.

The deadline in the hash is the authority, the TTL only the means by which Redis drops
the key on time. An RDB or AOF restore keeps TTLs (both store absolute times), but a
key's TTL can be lost: `PERSIST`, `RESTORE` with a TTL of 0, a copy made by a tool that
does not carry TTLs. Such a key would live forever, so every script compares `e` with
the server's clock (the clock `PEXPIREAT` uses) and treats a key past it as absent, and
`purge_expired` removes those keys.

Requires the `redis` extra: `pip install 'sessionguard[redis]'`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import methodcaller
from typing import Any, NamedTuple

from ..errors import ConfigurationError, StoreUnavailableError
from .base import (
    KEEP,
    BaseStore,
    Emit,
    Owner,
    PurgeProgress,
    Record,
    StoredRecord,
    StoreFlow,
    Updater,
    arun_flow,
    arun_purge,
    aupdate_by_swap,
    iterate_flow,
    run_flow,
    validate_key,
)
from .redisscripts import (
    DELETE_SCRIPT,
    LOAD_SCRIPT,
    OWNER_OF_SCRIPT,
    PURGE_IF_EXPIRED_SCRIPT,
    SAVE_SCRIPT,
    SESSIONS_OF_SCRIPT,
    TOUCH_SCRIPT,
)

try:
    import redis
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError(
        "RedisStore needs the redis client: pip install 'sessionguard[redis]'"
    ) from exc

__all__ = ["RedisStore"]


_PURGE_SHA = hashlib.sha1(PURGE_IF_EXPIRED_SCRIPT.encode()).hexdigest()


class RedisStore(BaseStore):
    """Sessions in Redis, for several app servers sharing one store.

    Give a `url` (`redis://host:6379/0`, `rediss://...`; the store creates and closes its
    own clients) or ready clients (`client` for the WSGI side, `async_client` for the
    ASGI side; whoever created them closes them). Clients from Sentinel
    (`Sentinel(...).master_for(name)`) work as given. Timeouts are short on purpose: a
    dead Redis becomes `StoreUnavailableError` (a 503) in about a second instead of
    hanging requests, and redis-py reconnects by itself once it is back.

    Each operation is written once, as a flow of commands (`_load`, `_save`, ...), and
    run on the blocking client by the sync methods and on the asyncio one by the async
    methods. `update` is the compare-and-swap loop: each attempt is two atomic round
    trips, and Redis is fast enough that losing the race 32 times in a row needs far
    more writers on one session than a browser has. The owner travels with each
    compare-and-swap write, so an update that changes it is as atomic as one that does not.
    """

    indexes_users = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        prefix: str = "sessionguard:",
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
    ) -> None:
        super().__init__()
        if url is None and client is None and async_client is None:
            raise ConfigurationError(
                "RedisStore needs a url (RedisStore('redis://localhost:6379/0')) or a client"
            )
        self.prefix = prefix
        self._url = url
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        # One quick retry covers a dropped idle connection (a restarted server); more would
        # only delay the 503. The asyncio client needs the asyncio Retry: given the other,
        # it never retries at all.
        backoff = ExponentialBackoff(cap=0.1, base=0.01)
        self._blocking = _Side(
            redis.Redis.from_url,
            Retry(backoff, retries=1),
            client,
            "this RedisStore was given only async_client; pass client= or url= to use it from WSGI",
        )
        self._awaiting = _Side(
            redis.asyncio.Redis.from_url,
            AsyncRetry(backoff, retries=1),
            async_client,
            "this RedisStore was given only client; pass async_client= or url= to use it from ASGI",
        )

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    # -- the two clients, created on first use -------------------------------------------

    def _sync(self) -> _Half:
        return self._half(self._blocking)

    def _async(self) -> _Half:
        return self._half(self._awaiting)

    def _half(self, side: _Side) -> _Half:
        if side.half is None:
            if side.client is None:
                if self._url is None:
                    raise ConfigurationError(side.refusal)
                side.client = side.connect(self._url, retry=side.retry, **self._options)
                side.owned = True
            side.half = _Half.on(side.client)
        return side.half

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _pattern(self) -> str:
        return _glob_escape(self.prefix) + "*"

    def _sets(self) -> str:
        """What the names of the users' sets start with."""
        return self.prefix + "user:"  # never a session key: ':' is not allowed in those

    def _owning(self, owner: Owner) -> _Owning:
        if owner is KEEP:
            return _Owning([], ["keep", ""])
        if owner is None:
            return _Owning([], ["none", ""])
        return _Owning([self._user_set(owner)], ["own", _owner_bytes(owner)])

    def _user_set(self, user: str) -> str:
        return self._sets() + hashlib.blake2b(_owner_bytes(user), digest_size=16).hexdigest()

    # -- the API: each method runs its flow on one client ----------------------------------

    def load(self, key: str) -> Record | None:
        return run_flow(_load(self._key(key)), self._sync().perform)

    async def aload(self, key: str) -> Record | None:
        return await arun_flow(_load(self._key(key)), self._async().perform)

    def save(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        flow = _save(self._key(key), payload, expires_at, expected_version, self._owning(owner))
        return run_flow(flow, self._sync().perform)

    async def asave(
        self,
        key: str,
        payload: bytes,
        *,
        expires_at: float,
        expected_version: int | None = None,
        owner: Owner = KEEP,
    ) -> int | None:
        flow = _save(self._key(key), payload, expires_at, expected_version, self._owning(owner))
        return await arun_flow(flow, self._async().perform)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        return run_flow(_delete(self._key(key), expected_version), self._sync().perform)

    async def adelete(self, key: str, *, expected_version: int | None = None) -> bool:
        return await arun_flow(_delete(self._key(key), expected_version), self._async().perform)

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        flow = _touch(self._key(key), expires_at, expected_version)
        return run_flow(flow, self._sync().perform)

    async def atouch(
        self, key: str, expires_at: float, *, expected_version: int | None = None
    ) -> bool:
        flow = _touch(self._key(key), expires_at, expected_version)
        return await arun_flow(flow, self._async().perform)

    async def aupdate(self, key: str, updater: Updater) -> int | None:
        return await aupdate_by_swap(self, key, updater)

    def sessions_of(self, user: str) -> list[str]:
        return run_flow(_sessions_of(self.prefix, self._user_set(user)), self._sync().perform)

    async def asessions_of(self, user: str) -> list[str]:
        flow = _sessions_of(self.prefix, self._user_set(user))
        return await arun_flow(flow, self._async().perform)

    def owner_of(self, key: str) -> str | None:
        return run_flow(_owner_of(self._key(key)), self._sync().perform)

    async def aowner_of(self, key: str) -> str | None:
        return await arun_flow(_owner_of(self._key(key)), self._async().perform)

    def purge_expired_batches(self, batch_size: int = 1000) -> Iterator[PurgeProgress]:
        """`purge_expired` in `SCAN` steps: it removes session keys past their deadline
        whose TTL was lost (`PERSIST`, a copy without TTLs); Redis removes every other
        expired key by itself. Each key is checked and removed in one script, so a key
        refreshed since `SCAN` listed it is kept. Users' sets met on the way lose the
        names of records that are gone. `total` is 0 (unknown)."""
        flow = _purge(self.prefix, self._pattern(), self._sets(), batch_size)
        yield from iterate_flow(flow, self._sync().perform)

    async def apurge_expired(self) -> int:
        flow = _purge(self.prefix, self._pattern(), self._sets(), 1000)
        return await arun_purge(flow, self._async().perform)

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        """Every session key under this store's prefix, found with `SCAN` (never `KEYS`).

        `expired` is true only for keys whose TTL was lost (Redis deletes the others when
        their deadline passes). Keys under the prefix that are not sessionguard hashes
        (another program's) are skipped.
        Like `SCAN` itself, a key may be yielded twice if Redis resizes its table meanwhile
        (remembering every key to hide that would make memory grow with the store).
        """
        client = self._sync().client
        cursor: int | None = None
        while cursor != 0:
            with _mapped_errors("scan"):
                cursor, names = client.scan(cursor or 0, match=self._pattern(), count=batch_size)
                pipe = client.pipeline(transaction=False)
                for name in names:
                    pipe.hmget(name, "p", "v", "e")
                replies = pipe.execute(raise_on_error=False)
                seconds, micros = client.time()
            now = seconds + micros / 1e6  # the server's clock, as the scripts use
            for name, reply in zip(names, replies, strict=True):
                raw = name if isinstance(name, bytes) else name.encode()
                found = _scanned(raw[len(self.prefix.encode()) :], reply, now)
                if found is not None:
                    yield found

    def close(self) -> None:
        client = self._blocking.release()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        self.close()
        client = self._awaiting.release()
        if client is not None:
            await client.aclose()


# -- the two clients ---------------------------------------------------------------------------


@dataclass
class _Side:
    """One of the store's two clients: the one it was given, or one it makes from its URL
    (and then owns and closes) on first use."""

    connect: Callable[..., Any]
    retry: Any
    client: Any
    refusal: str  # what to say when there is neither a client nor a URL to make one
    owned: bool = False
    half: _Half | None = None

    def release(self) -> Any:
        """The client to close, if the store made it; forgotten, so that it is made anew."""
        if self.client is None or not self.owned:
            return None
        client, self.client, self.half = self.client, None, None
        return client


class _Half(NamedTuple):
    """A client and the scripts registered on it: what the steps of a flow call.

    Each step is a function of a half, called by `perform`: on the blocking client it
    returns the reply, on the asyncio client an awaitable of the reply.
    """

    client: Any
    load: Any
    save: Any
    delete: Any
    touch: Any
    sessions_of: Any
    owner_of: Any

    @classmethod
    def on(cls, client: Any) -> _Half:
        scripts = (
            LOAD_SCRIPT,
            SAVE_SCRIPT,
            DELETE_SCRIPT,
            TOUCH_SCRIPT,
            SESSIONS_OF_SCRIPT,
            OWNER_OF_SCRIPT,
        )
        return cls(client, *(client.register_script(script) for script in scripts))

    def perform(self, step: Callable[[_Half], Any]) -> Any:
        return step(self)


class _Owning(NamedTuple):
    """The keys and arguments the save script takes for an owner (after the others)."""

    keys: list[str]
    args: list[Any]


# -- the operations, each written once -------------------------------------------------------


def _load(name: str) -> StoreFlow[Record | None]:
    with _mapped_errors("load"):
        return _record((yield methodcaller("load", keys=[name])))


def _save(
    name: str, payload: bytes, expires_at: float, expected: int | None, owning: _Owning
) -> StoreFlow[int | None]:
    keys, args = [name, *owning.keys], [*_save_args(payload, expires_at, expected), *owning.args]
    with _mapped_errors("save"):
        return _version((yield methodcaller("save", keys=keys, args=args)))


def _delete(name: str, expected: int | None) -> StoreFlow[bool]:
    # A script even without `expected`: the record leaves its owner's set in the same step.
    args = ["" if expected is None else expected]
    with _mapped_errors("delete"):
        return bool((yield methodcaller("delete", keys=[name], args=args)))


def _sessions_of(prefix: str, user_set: str) -> StoreFlow[list[str]]:
    with _mapped_errors("list the sessions of a user", subject=""):
        names = yield methodcaller("sessions_of", keys=[user_set])
    return [_text(name)[len(prefix) :] for name in names]


def _owner_of(name: str) -> StoreFlow[str | None]:
    with _mapped_errors("read the owner of"):
        return _owner((yield methodcaller("owner_of", keys=[name])))


def _touch(name: str, expires_at: float, expected: int | None) -> StoreFlow[bool]:
    args = [*_touch_args(expires_at), "" if expected is None else expected]
    with _mapped_errors("touch"):
        return bool((yield methodcaller("touch", keys=[name], args=args)))


def _purge(prefix: str, pattern: str, sets: str, batch_size: int) -> StoreFlow[None]:
    """Emits a `PurgeProgress` per `SCAN` step; `sets` starts the names of users' sets."""
    cursor: int | None = None
    done = 0
    while cursor != 0:
        with _mapped_errors("purge"):
            cursor, names = yield _scan_step(cursor or 0, pattern, batch_size)
            replies = yield _purge_step(names, sets)
        done += 1
        keys = tuple(
            _text(name)[len(prefix) :] for name, n in zip(names, replies[1:], strict=True) if int(n)
        )
        yield Emit(PurgeProgress(len(keys), done, 0, keys=keys))


def _scan_step(cursor: int, pattern: str, count: int) -> Callable[[_Half], Any]:
    return lambda half: half.client.scan(cursor, match=pattern, count=count)


def _purge_step(names: list[Any], sets: str) -> Callable[[_Half], Any]:
    def step(half: _Half) -> Any:
        pipe = half.client.pipeline(transaction=False)
        if names:
            # Loaded in the same round trip, ahead of the calls: it cannot be missing.
            pipe.script_load(PURGE_IF_EXPIRED_SCRIPT)
        for name in names:
            pipe.evalsha(_PURGE_SHA, 1, name, sets)
        return pipe.execute()

    return step


# -- replies -------------------------------------------------------------------------------


def _millis(timestamp: float) -> int:
    return int(timestamp * 1000)


def _save_args(payload: bytes, expires_at: float, expected: int | None) -> list[Any]:
    return ["" if expected is None else expected, payload, *_touch_args(expires_at)]


def _touch_args(expires_at: float) -> list[Any]:
    # repr() keeps every bit of the float, so load returns the deadline exactly.
    return [_millis(expires_at), repr(expires_at)]


def _record(reply: Any) -> Record | None:
    if reply is None:
        return None
    payload, version, deadline = reply
    return Record(bytes(payload), int(version), float(deadline))


def _version(reply: Any) -> int | None:
    return int(reply) or None


def _owner_bytes(owner: str) -> bytes:
    # surrogatepass: any Python str round-trips, lone surrogates included.
    return owner.encode("utf-8", "surrogatepass")


def _owner(reply: Any) -> str | None:
    if reply is None or isinstance(reply, str):  # str: a client that decodes replies
        return reply
    return bytes(reply).decode("utf-8", "surrogatepass")


def _text(reply: Any) -> str:
    return reply if isinstance(reply, str) else bytes(reply).decode("ascii")


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _scanned(name: bytes, reply: Any, now: float) -> StoredRecord | None:
    if isinstance(reply, Exception) or not isinstance(reply, list) or None in reply:
        return None  # not a session hash (or deleted since SCAN listed it)
    try:
        key = validate_key(name.decode("ascii"))
        payload, version, deadline = reply
        record = Record(bytes(payload), int(version), float(deadline))
        return StoredRecord(key, record, record.expires_at <= now)
    except ValueError:  # UnicodeDecodeError included
        return None


def _error(action: str, exc: redis.RedisError, subject: str = "a session") -> StoreUnavailableError:
    what = f"{action} {subject}" if subject else action
    return StoreUnavailableError(
        f"RedisStore could not {what}: {exc.__class__.__name__}: {exc}. Check "
        "that Redis is running, reachable and writable; stored sessions were not changed."
    )


@contextlib.contextmanager
def _mapped_errors(action: str, subject: str = "a session") -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise _error(action, exc, subject) from exc
