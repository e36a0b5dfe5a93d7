"""`RedisStore`: one Redis hash per session, expiry as the key's TTL, compare-and-swap in Lua.

Each session is a single key `<prefix><id>` holding a hash `{v: version, p: payload,
e: deadline}` (the deadline kept exactly, and also set as the key's expiry),
so every operation touches exactly one key and works unchanged on Redis Cluster. Every
operation is one round trip: the compare-and-swap, the conditional delete and the load
and `touch` are Lua scripts, which Redis runs atomically. `touch` moves the deadline and
the key's expiry and does not rewrite the body.

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
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, StoreUnavailableError
from .base import (
    PurgeProgress,
    Record,
    StoredRecord,
    Updater,
    aupdate_by_swap,
    purge_in_one_go,
    update_by_swap,
    validate_key,
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

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript, Script

__all__ = ["RedisStore"]

# Prepended to every script: whether deadline `e` (Unix seconds) has passed by the server's
# clock. TIME is allowed before writes because scripts replicate their effects (Redis 5+).
_EXPIRED = """
local function expired(e)
  local now = redis.call('TIME')
  return tonumber(e) <= tonumber(now[1]) + tonumber(now[2]) / 1000000
end
"""

# KEYS[1] = session key. Returns {payload, version, deadline} or nil.
_LOAD = (
    _EXPIRED
    + """
local fields = redis.call('HMGET', KEYS[1], 'p', 'v', 'e')
if not (fields[1] and fields[2] and fields[3]) or expired(fields[3]) then return nil end
return fields
"""
)

# ARGV = expected version ('' = unconditional), payload, deadline in unix ms, deadline.
# Returns the new version, or 0 on a compare-and-swap miss.
_SAVE = (
    _EXPIRED
    + """
local current = redis.call('HGET', KEYS[1], 'v')
local e = redis.call('HGET', KEYS[1], 'e')
if current and e and expired(e) then
  redis.call('DEL', KEYS[1])  -- its TTL was lost; it is not live, so start afresh
  current = false
end
if ARGV[1] ~= '' then
  if ARGV[1] == '0' then
    if current then return 0 end
  elseif current ~= ARGV[1] then
    return 0
  end
end
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'p', ARGV[2], 'e', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return version
"""
)

# ARGV = deadline in unix ms, deadline, expected version ('' = any). Returns 1 if touched.
_TOUCH = (
    _EXPIRED
    + """
local fields = redis.call('HMGET', KEYS[1], 'v', 'e')
local e = fields[2]
if not e or expired(e) then return 0 end
if ARGV[3] ~= '' and fields[1] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[2])
return redis.call('PEXPIREAT', KEYS[1], ARGV[1])
"""
)

# ARGV = expected version. Returns 1 if deleted.
_DELETE_IF = (
    _EXPIRED
    + """
local fields = redis.call('HMGET', KEYS[1], 'v', 'e')
if fields[1] == ARGV[1] and fields[2] and not expired(fields[2]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)

# Removes the key if it is a session hash past its deadline (its TTL was lost).
_PURGE_IF_EXPIRED = (
    _EXPIRED
    + """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return 0 end
local e = redis.call('HGET', KEYS[1], 'e')
if e and redis.call('HEXISTS', KEYS[1], 'p') == 1 and expired(e) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)


class RedisStore:
    """Sessions in Redis, for several app servers sharing one store.

    Give a `url` (`redis://host:6379/0`, `rediss://...`; the store creates and closes its
    own clients) or ready clients (`client` for the WSGI side, `async_client` for the
    ASGI side; whoever created them closes them). Clients from Sentinel
    (`Sentinel(...).master_for(name)`) work as given. Timeouts are short on purpose: a
    dead Redis becomes `StoreUnavailableError` (a 503) in about a second instead of
    hanging requests, and redis-py reconnects by itself once it is back.
    """

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
        self._sync_retry = Retry(backoff, retries=1)
        self._async_retry = AsyncRetry(backoff, retries=1)
        self._client = client
        self._async_client = async_client
        self._owns_client = client is None
        self._owns_async_client = async_client is None
        self._scripts: tuple[Script, Script, Script, Script] | None = None
        self._async_scripts: tuple[AsyncScript, AsyncScript, AsyncScript, AsyncScript] | None = None

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    # -- the two halves, created on first use --------------------------------------------

    def _sync(self) -> tuple[redis.Redis, tuple[Script, Script, Script, Script]]:
        if self._client is None:
            if self._url is None:
                raise ConfigurationError(
                    "this RedisStore was given only async_client; pass client= or url= "
                    "to use it from WSGI"
                )
            self._client = redis.Redis.from_url(self._url, retry=self._sync_retry, **self._options)
        if self._scripts is None:
            register = self._client.register_script
            self._scripts = (
                register(_LOAD),
                register(_SAVE),
                register(_DELETE_IF),
                register(_TOUCH),
            )
        return self._client, self._scripts

    def _async(
        self,
    ) -> tuple[redis.asyncio.Redis, tuple[AsyncScript, AsyncScript, AsyncScript, AsyncScript]]:
        if self._async_client is None:
            if self._url is None:
                raise ConfigurationError(
                    "this RedisStore was given only client; pass async_client= or url= "
                    "to use it from ASGI"
                )
            self._async_client = redis.asyncio.Redis.from_url(
                self._url, retry=self._async_retry, **self._options
            )
        if self._async_scripts is None:
            register = self._async_client.register_script
            self._async_scripts = (
                register(_LOAD),
                register(_SAVE),
                register(_DELETE_IF),
                register(_TOUCH),
            )
        return self._async_client, self._async_scripts

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _pattern(self) -> str:
        return _glob_escape(self.prefix) + "*"

    # -- sync API --------------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        name = self._key(key)
        _, (load, *_) = self._sync()
        with _mapped_errors("load"):
            return _record(load(keys=[name]))

    def save(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        name = self._key(key)
        _, (_, save, *_) = self._sync()
        with _mapped_errors("save"):
            return _version(
                save(keys=[name], args=_save_args(payload, expires_at, expected_version))
            )

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        name = self._key(key)
        client, (_, _, delete_if, _) = self._sync()
        with _mapped_errors("delete"):
            if expected_version is None:
                return bool(client.delete(name))
            return bool(delete_if(keys=[name], args=[expected_version]))

    def touch(self, key: str, expires_at: float, *, expected_version: int | None = None) -> bool:
        name = self._key(key)
        _, (*_, touch) = self._sync()
        args = [*_touch_args(expires_at), "" if expected_version is None else expected_version]
        with _mapped_errors("touch"):
            return bool(touch(keys=[name], args=args))

    def update(self, key: str, updater: Updater) -> int | None:
        # Each attempt is two atomic round trips; Redis is fast enough that losing the race
        # 32 times in a row needs far more writers on one session than a browser has.
        return update_by_swap(self, key, updater)

    def purge_expired(self) -> int:
        """Remove session keys past their deadline whose TTL was lost (`PERSIST`, a copy
        without TTLs); Redis removes every other expired key by itself."""
        return purge_in_one_go(self)

    def purge_expired_batches(self, batch_size: int = 1000) -> Iterator[PurgeProgress]:
        """`purge_expired` in `SCAN` steps; each key is checked and removed in one script,
        so a key refreshed since `SCAN` listed it is kept. `total` is 0 (unknown)."""
        client, _ = self._sync()
        purge = client.register_script(_PURGE_IF_EXPIRED)
        cursor: int | None = None
        done = 0
        while cursor != 0:
            with _mapped_errors("purge"):
                cursor, names = client.scan(cursor or 0, match=self._pattern(), count=batch_size)
                pipe = client.pipeline(transaction=False)
                for name in names:
                    purge(keys=[name], client=pipe)
                removed = sum(int(n) for n in pipe.execute())
            done += 1
            yield PurgeProgress(removed, done, 0)

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        """Every session key under this store's prefix, found with `SCAN` (never `KEYS`).

        `expired` is true only for keys whose TTL was lost (Redis deletes the others when
        their deadline passes). Keys under the prefix that are not sessionguard hashes
        (another program's) are skipped.
        Like `SCAN` itself, a key may be yielded twice if Redis resizes its table meanwhile
        (remembering every key to hide that would make memory grow with the store).
        """
        client, _ = self._sync()
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
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None
            self._scripts = None

    # -- async API -------------------------------------------------------------------------

    async def aload(self, key: str) -> Record | None:
        name = self._key(key)
        _, (load, *_) = self._async()
        async with _amapped_errors("load"):
            return _record(await load(keys=[name]))

    async def asave(
        self, key: str, payload: bytes, *, expires_at: float, expected_version: int | None = None
    ) -> int | None:
        name = self._key(key)
        _, (_, save, *_) = self._async()
        args = _save_args(payload, expires_at, expected_version)
        async with _amapped_errors("save"):
            return _version(await save(keys=[name], args=args))

    async def adelete(self, key: str, *, expected_version: int | None = None) -> bool:
        name = self._key(key)
        client, (_, _, delete_if, _) = self._async()
        async with _amapped_errors("delete"):
            if expected_version is None:
                return bool(await client.delete(name))
            return bool(await delete_if(keys=[name], args=[expected_version]))

    async def atouch(
        self, key: str, expires_at: float, *, expected_version: int | None = None
    ) -> bool:
        name = self._key(key)
        _, (*_, touch) = self._async()
        args = [*_touch_args(expires_at), "" if expected_version is None else expected_version]
        async with _amapped_errors("touch"):
            return bool(await touch(keys=[name], args=args))

    async def aupdate(self, key: str, updater: Updater) -> int | None:
        return await aupdate_by_swap(self, key, updater)

    async def apurge_expired(self) -> int:
        client, _ = self._async()
        purge = client.register_script(_PURGE_IF_EXPIRED)
        removed = 0
        async with _amapped_errors("purge"):
            async for name in client.scan_iter(match=self._pattern(), count=1000):
                removed += int(await purge(keys=[name]))
        return removed

    async def aclose(self) -> None:
        self.close()
        if self._async_client is not None and self._owns_async_client:
            await self._async_client.aclose()
            self._async_client = None
            self._async_scripts = None


# -- shared by both halves -------------------------------------------------------------------


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


def _error(action: str, exc: redis.RedisError) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"RedisStore could not {action} a session: {exc.__class__.__name__}: {exc}. Check "
        "that Redis is running, reachable and writable; stored sessions were not changed."
    )


@contextlib.contextmanager
def _mapped_errors(action: str) -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise _error(action, exc) from exc


@contextlib.asynccontextmanager
async def _amapped_errors(action: str) -> AsyncIterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise _error(action, exc) from exc
