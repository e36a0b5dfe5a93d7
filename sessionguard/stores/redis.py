"""`RedisStore`: one Redis hash per session, expiry as the key's TTL, compare-and-swap in Lua.

Each session is a single key (`<prefix><id>`) holding a hash `{v: version, p: payload,
e: deadline, t: the last save's token}` (the deadline kept exactly, and also set as the
key's expiry; the token makes a save the client retries count once). Every
operation is one round trip: the compare-and-swap, the deletes, the load and `touch`
are Lua scripts, which Redis runs atomically. `touch` moves the deadline and the key's
expiry and does not rewrite the body.

A session that belongs to a user (`indexes_users`) also has `o: the user id` and `u: the
name of the user's set` in its hash, and is a member (by its key's name) of that set. The
script that writes the record changes the sets in the same atomic step, so concurrent
writers never leave a set disagreeing with the hashes. A record that Redis expires by its
TTL leaves its name in the set: `sessions_of` drops such names when it meets them, and
`purge_expired` sweeps every set. Where the keys are, on one server and on Redis Cluster
(where a session and its sets share a hash slot), is `sessionguard.stores.redisnames`.

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
import os
from collections.abc import Callable, Iterator
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
)

# redis-py comes through redisclient, which says which extra to install when it is missing.
from .redisclient import (
    AsyncRetry,
    ExponentialBackoff,
    Half,
    Replication,
    Retry,
    Side,
    cursor_of,
    in_pipeline,
    primaries,
    redis,
    runs_on_cluster,
    scan_options,
)
from .redisnames import RedisNames
from .redisscripts import (
    DELETE_SCRIPT,
    LOAD_SCRIPT,
    OWNER_OF_SCRIPT,
    PURGE_IF_EXPIRED_SCRIPT,
    SAVE_SCRIPT,
    SESSIONS_OF_SCRIPT,
    TOUCH_SCRIPT,
)

__all__ = ["RedisStore"]


class RedisStore(BaseStore):
    """Sessions in Redis, for several app servers sharing one store.

    Give a `url` (`redis://host:6379/0`, `rediss://...`; the store creates and closes its
    own clients) or ready clients (`client` for the WSGI side, `async_client` for the
    ASGI side; whoever created them closes them). Clients from Sentinel
    (`Sentinel(...).master_for(name)`) work as given. On Redis Cluster, pass
    `cluster=True` with the URL of any node, or `redis.cluster.RedisCluster` and
    `redis.asyncio.cluster.RedisCluster` clients (see `sessionguard.stores.redisnames`
    for how the keys then share hash slots). Timeouts are short on purpose: a
    dead Redis becomes `StoreUnavailableError` (a 503) in about a second instead of
    hanging requests, and redis-py reconnects by itself once it is back. With
    `replicas=N`, each save and delete also waits (Redis WAIT, up to `replica_timeout`)
    until N replicas have it, and raises `StoreUnavailableError` when they cannot
    confirm: a failover then loses nothing the app acknowledged.

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
        client: redis.Redis | redis.cluster.RedisCluster | None = None,
        async_client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster | None = None,
        prefix: str = "sessionguard:",
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        cluster: bool | None = None,
        replicas: int = 0,
        replica_timeout: float = 0.5,
    ) -> None:
        super().__init__()
        if url is None and client is None and async_client is None:
            raise ConfigurationError(
                "RedisStore needs a url (RedisStore('redis://localhost:6379/0')) or a client"
            )
        if replicas < 0 or (replicas and not 0 < replica_timeout < socket_timeout):
            raise ConfigurationError(
                "RedisStore needs replicas >= 0 and 0 < replica_timeout < socket_timeout, got "
                f"replicas={replicas!r}, replica_timeout={replica_timeout!r}, "
                f"socket_timeout={socket_timeout!r}"
            )
        # With `replicas`, a save or a delete answers only once that many replicas have it
        # (Redis WAIT, within `replica_timeout`), so a failover cannot take it back.
        self._replication = Replication(replicas, max(1, int(replica_timeout * 1000)))
        on_cluster = runs_on_cluster(client, async_client, cluster)
        self.prefix = prefix
        self._names = RedisNames(prefix, cluster=on_cluster)
        self._url = url
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        # One quick retry covers a dropped idle connection (a restarted server, a failover);
        # a timeout is not retried, since a hung server would only double the wait for the
        # 503 (and a save that ran but whose reply was lost counts once: see SAVE_SCRIPT).
        # The asyncio client needs the asyncio Retry: given the other, it never retries.
        backoff = ExponentialBackoff(cap=0.1, base=0.01)
        dropped = (redis.exceptions.ConnectionError,)
        self._blocking = Side(
            redis.cluster.RedisCluster.from_url if on_cluster else redis.Redis.from_url,
            Retry(backoff, retries=1, supported_errors=dropped),
            client,
            "this RedisStore was given only async_client; pass client= or url= to use it from WSGI",
        )
        self._awaiting = Side(
            redis.asyncio.cluster.RedisCluster.from_url
            if on_cluster
            else redis.asyncio.Redis.from_url,
            AsyncRetry(backoff, retries=1, supported_errors=dropped),
            async_client,
            "this RedisStore was given only client; pass async_client= or url= to use it from ASGI",
        )

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    # -- the two clients, created on first use -------------------------------------------

    def _sync(self) -> Half:
        return self._half(self._blocking)

    def _async(self) -> Half:
        return self._half(self._awaiting)

    def _half(self, side: Side) -> Half:
        if side.half is None:
            if side.client is None:
                if self._url is None:
                    raise ConfigurationError(side.refusal)
                side.client = side.connect(self._url, retry=side.retry, **self._options)
                side.owned = True
            side.half = Half.on(side.client, self._names, self._replication)
        return side.half

    def _key(self, key: str) -> str:
        return self._names.record(key)

    def _owning(self, owner: Owner, key: str) -> _Owning:
        if owner is KEEP:
            return _Owning([], ["keep", ""])
        if owner is None:
            return _Owning([], ["none", ""])
        return _Owning([self._names.user_set(owner, key)], ["own", _owner_bytes(owner)])

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
        owning = self._owning(owner, key)
        flow = _save(self._key(key), payload, expires_at, expected_version, owning)
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
        owning = self._owning(owner, key)
        flow = _save(self._key(key), payload, expires_at, expected_version, owning)
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
        flow = _sessions_of(self._names, self._names.user_sets(user))
        return run_flow(flow, self._sync().perform)

    async def asessions_of(self, user: str) -> list[str]:
        flow = _sessions_of(self._names, self._names.user_sets(user))
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
        flow = _purge(self._names, batch_size)
        yield from iterate_flow(flow, self._sync().perform)

    async def apurge_expired(self) -> int:
        return await arun_purge(_purge(self._names, 1000), self._async().perform)

    def scan(self, *, batch_size: int = 500) -> Iterator[StoredRecord]:
        """Every session key under this store's prefix, found with `SCAN` (never `KEYS`).

        `expired` is true only for keys whose TTL was lost (Redis deletes the others when
        their deadline passes). Keys under the prefix that are not sessionguard hashes
        (another program's) are skipped.
        Like `SCAN` itself, a key may be yielded twice if Redis resizes its table meanwhile
        (remembering every key to hide that would make memory grow with the store).
        """
        half = self._sync()
        client = half.client
        with _mapped_errors("scan"):
            nodes = client.get_primaries() if half.cluster else [None]
        for node in nodes:  # on a cluster, each master in turn
            cursor: int | None = None
            while cursor != 0:
                with _mapped_errors("scan"):
                    reply = half.client.scan(
                        cursor or 0, **scan_options(node, batch_size, self._names)
                    )
                    cursor, names = cursor_of(reply[0]), reply[1]
                    pipe = client.pipeline(transaction=False)
                    for name in names:
                        pipe.hmget(name, "p", "v", "e")
                    replies = pipe.execute(raise_on_error=False)
                    seconds, micros = client.time()
                now = seconds + micros / 1e6  # the server's clock, as the scripts use
                for name, found in zip(names, replies, strict=True):
                    scanned = _scanned(self._names, name, found, now)
                    if scanned is not None:
                        yield scanned

    def close(self) -> None:
        client = self._blocking.release()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        self.close()
        client = self._awaiting.release()
        if client is not None:
            await client.aclose()


class _Owning(NamedTuple):
    """The keys and arguments the save script takes for an owner (after the others)."""

    keys: list[str]
    args: list[Any]


# -- the operations, each written once -------------------------------------------------------


def _load(name: str) -> StoreFlow[Record | None]:
    with _mapped_errors("load"):
        return _record((yield _script(LOAD_SCRIPT, [name])))


def _save(
    name: str, payload: bytes, expires_at: float, expected: int | None, owning: _Owning
) -> StoreFlow[int | None]:
    keys = [name, *owning.keys]
    # One token per save: a copy of this command sent again by the client is this write.
    args = [*_save_args(payload, expires_at, expected), *owning.args, os.urandom(8)]
    with _mapped_errors("save"):
        return _version((yield _write(SAVE_SCRIPT, keys, args)))


def _delete(name: str, expected: int | None) -> StoreFlow[bool]:
    # A script even without `expected`: the record leaves its owner's set in the same step.
    args = ["" if expected is None else expected]
    with _mapped_errors("delete"):
        return bool((yield _write(DELETE_SCRIPT, [name], args)))


def _script(source: str, keys: list[str], args: list[Any] = []) -> Callable[[Half], Any]:  # noqa: B006
    return lambda half: half.script(source, keys, args)


def _write(source: str, keys: list[str], args: list[Any]) -> Callable[[Half], Any]:
    return lambda half: half.write(source, keys, args)


def _sessions_of(names: RedisNames, user_sets: list[str]) -> StoreFlow[list[str]]:
    with _mapped_errors("list the sessions of a user", subject=""):
        if len(user_sets) == 1:
            replies = [(yield _script(SESSIONS_OF_SCRIPT, user_sets))]
        else:  # one set per bucket, on a cluster: all of them in one pipeline
            replies = yield in_pipeline(SESSIONS_OF_SCRIPT, [[s] for s in user_sets])
    return [names.key_of(_text(name)) for reply in replies for name in reply]


def _owner_of(name: str) -> StoreFlow[str | None]:
    with _mapped_errors("read the owner of"):
        return _owner((yield _script(OWNER_OF_SCRIPT, [name])))


def _touch(name: str, expires_at: float, expected: int | None) -> StoreFlow[bool]:
    args = [*_touch_args(expires_at), "" if expected is None else expected]
    with _mapped_errors("touch"):
        return bool((yield _script(TOUCH_SCRIPT, [name], args)))


def _purge(names: RedisNames, batch_size: int) -> StoreFlow[None]:
    """Emits a `PurgeProgress` per `SCAN` step (of each master, on a cluster)."""
    with _mapped_errors("purge"):
        nodes = yield primaries
    done = 0
    for node in nodes:
        cursor: int | None = None
        while cursor != 0:
            with _mapped_errors("purge"):
                options = scan_options(node, batch_size, names)
                reply = yield lambda half, c=cursor or 0, o=options: half.client.scan(c, **o)
                cursor, found = cursor_of(reply[0]), [_text(name) for name in reply[1]]
                # Each key with the users' sets of its own slot (the prefix alone, off a cluster).
                calls = [[name, names.sets_near(name)] for name in found]
                removed = yield in_pipeline(PURGE_IF_EXPIRED_SCRIPT, calls, keys=1)
            done += 1
            keys = tuple(
                names.key_of(n) for n, gone in zip(found, removed, strict=True) if int(gone)
            )
            yield Emit(PurgeProgress(len(keys), done, 0, keys=keys))


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


def _scanned(names: RedisNames, name: Any, reply: Any, now: float) -> StoredRecord | None:
    if isinstance(reply, Exception) or not isinstance(reply, list) or None in reply:
        return None  # not a session hash (or deleted since SCAN listed it)
    try:
        key = names.key_of(_text(name))
        payload, version, deadline = reply
        record = Record(bytes(payload), int(version), float(deadline))
        return StoredRecord(key, record, record.expires_at <= now)
    except ValueError:  # UnicodeDecodeError included
        return None


def _error(action: str, exc: Exception, subject: str = "a session") -> StoreUnavailableError:
    what = f"{action} {subject}" if subject else action
    return StoreUnavailableError(
        f"RedisStore could not {what}: {exc.__class__.__name__}: {exc}. Check "
        "that Redis is running, reachable and writable; stored sessions were not changed."
    )


@contextlib.contextmanager
def _mapped_errors(action: str, subject: str = "a session") -> Iterator[None]:
    try:
        yield
    # A cluster client that reaches no node raises RedisClusterException, which is not a
    # RedisError: an outage all the same.
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise _error(action, exc, subject) from exc
