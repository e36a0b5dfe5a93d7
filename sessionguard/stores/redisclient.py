"""`RedisStore`'s two clients (blocking and asyncio, on one server or a cluster) and how
each step of a store flow runs on one: a script by its SHA1 (or its text, where a server
lacks it), a write followed by WAIT for replicas, a pipeline per master, the nodes to scan.

A step is a function of a `Half`: on the blocking client it returns the reply, on the
asyncio client an awaitable of the reply (`ready` and `then` build such replies).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import ConfigurationError, StoreUnavailableError

# The one check that the `redis` extra is installed: `sessionguard.stores.redis` imports
# redis-py (and the retry classes) from here.
try:
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError(
        "RedisStore needs the redis client: pip install 'sessionguard[redis]'"
    ) from exc
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

__all__ = [
    "SHAS",
    "AsyncRetry",
    "ExponentialBackoff",
    "Retry",
    "Half",
    "Replication",
    "Side",
    "cursor_of",
    "in_pipeline",
    "initialized",
    "runs_on_cluster",
    "primaries",
    "ready",
    "redis",
    "replicated",
    "scan_options",
    "then",
]


def runs_on_cluster(client: Any, async_client: Any, cluster: bool | None) -> bool:
    """Whether the store runs on Redis Cluster: as told, or as its clients are."""
    given = {
        isinstance(c, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)
        for c in (client, async_client)
        if c is not None
    }
    if len(given) > 1 or (given and cluster is not None and given != {cluster}):
        raise ConfigurationError(
            "RedisStore was given a cluster client and a plain one (or cluster= says "
            "otherwise): both clients must talk to the same kind of deployment"
        )
    return given.pop() if given else bool(cluster)


@dataclass
class Side:
    """One of the store's two clients: the one it was given, or one it makes from its URL
    (and then owns and closes) on first use."""

    connect: Callable[..., Any]
    retry: Any
    client: Any
    refusal: str  # what to say when there is neither a client nor a URL to make one
    owned: bool = False
    half: Half | None = None

    def release(self) -> Any:
        """The client to close, if the store made it; forgotten, so that it is made anew."""
        if self.client is None or not self.owned:
            return None
        client, self.client, self.half = self.client, None, None
        return client


class Half(NamedTuple):
    """A client, and how it runs scripts: what the steps of a flow call.

    Each step is a function of a half, called by `perform`: on the blocking client it
    returns the reply, on the asyncio client an awaitable of the reply.
    """

    client: Any
    cluster: bool
    awaiting: bool
    replication: Replication

    @classmethod
    def on(cls, client: Any, names: RedisNames, replication: Replication) -> Half:
        awaiting = isinstance(client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster)
        return cls(client, names.cluster, awaiting, replication)

    def write(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """`script` for a write (a save, a delete): with `replicas`, in one pipeline with
        WAIT on the same connection, and answered only once the replicas have it."""
        replicas, timeout_ms = self.replication
        if not replicas:
            return self.script(source, keys, args)

        def pipeline() -> Any:
            # On a cluster, WAIT goes where the write went: the master of the key's slot
            # (asked only now: an asyncio cluster client knows it once initialized).
            where = {"target_nodes": self.client.get_node_from_key(keys[0])} if self.cluster else {}
            pipe = self.client.pipeline(transaction=False)
            # EVAL, not EVALSHA: a pipeline cannot load a script it finds missing.
            pipe.execute_command("EVAL", source, len(keys), *keys, *args)
            pipe.execute_command("WAIT", replicas, timeout_ms, **where)
            return pipe.execute(raise_on_error=False)

        if not self.awaiting:
            return replicated(pipeline(), replicas, timeout_ms)

        async def run() -> Any:
            if self.cluster:
                await initialized(self)
            return replicated(await pipeline(), replicas, timeout_ms)

        return run()

    def perform(self, step: Callable[[Half], Any]) -> Any:
        return step(self)

    def script(self, source: str, keys: list[str], args: list[Any] = []) -> Any:  # noqa: B006
        """Run `source` on `keys` and `args`: by its SHA1, or, on a server that does not
        have it yet (new, restarted, a replica just promoted), by its text, which also
        caches it there. (redis-py's own `Script` loads it on every master of a cluster
        at once instead, which breaks the asyncio cluster client's other connections.)"""
        sha = SHAS[source]
        if not self.awaiting:
            try:
                return self.client.evalsha(sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                return self.client.eval(source, len(keys), *keys, *args)

        async def run() -> Any:
            if self.cluster:
                await initialized(self)
            try:
                return await self.client.evalsha(sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                return await self.client.eval(source, len(keys), *keys, *args)

        return run()


class Replication(NamedTuple):
    """How many replicas must have each write (0: none), and how long to wait for them."""

    replicas: int
    timeout_ms: int


def replicated(replies: list[Any], replicas: int, timeout_ms: int) -> Any:
    """The write's reply, once WAIT says `replicas` replicas have it; else
    `StoreUnavailableError` (a 503): the write is on the master but not acknowledged."""
    reply, acknowledged = replies
    for error in (reply, acknowledged):
        if isinstance(error, Exception):
            raise error
    if int(reply) and int(acknowledged) < replicas:
        raise StoreUnavailableError(
            f"RedisStore's write reached {int(acknowledged)} of the {replicas} replica(s) it "
            f"must reach (replicas={replicas}) within {timeout_ms} ms, so it is not "
            "acknowledged: a failover now could lose it. Check the replicas' links and lag."
        )
    return reply


SHAS = {
    source: hashlib.sha1(source.encode()).hexdigest()
    for source in (
        LOAD_SCRIPT,
        SAVE_SCRIPT,
        DELETE_SCRIPT,
        TOUCH_SCRIPT,
        SESSIONS_OF_SCRIPT,
        OWNER_OF_SCRIPT,
        PURGE_IF_EXPIRED_SCRIPT,
    )
}


def primaries(half: Half) -> Any:
    """The nodes to `SCAN`: each master of a cluster, or the one server (`None`)."""
    if not half.cluster:
        return ready(half, [None])
    return then(half, initialized(half), lambda _: half.client.get_primaries())


def initialized(half: Half) -> Any:
    """A step's reply once the asyncio cluster client knows the cluster (`None`).

    Left to learn it on the way (redis-py 8.1), concurrent first commands go to the wrong
    masters, and handling the MOVED replies drops every connection, including those of
    the commands still in flight. The blocking client learns it when it is made.
    """
    if not half.awaiting:
        return None

    async def initialized() -> None:
        await half.client.initialize()  # a no-op once done

    return initialized()


def ready(half: Half, value: Any) -> Any:
    """`value` as a step's reply: as it is on the blocking client, awaitable on asyncio."""
    if not half.awaiting:
        return value

    async def reply() -> Any:
        return value

    return reply()


def scan_options(node: Any, count: int, names: RedisNames) -> dict[str, Any]:
    options: dict[str, Any] = {"match": names.pattern(), "count": count}
    if node is not None:
        options["target_nodes"] = node
    return options


def cursor_of(reply: Any) -> int:
    """A `SCAN` cursor: a cluster client gives `{node: cursor}` for the one node asked."""
    return int(next(iter(reply.values())) if isinstance(reply, dict) else reply)


def in_pipeline(
    script: str, calls: list[list[Any]], keys: int | None = None
) -> Callable[[Half], Any]:
    """A step that runs `script` once per call (its keys, then its arguments: `keys` of
    them are keys, all by default) in one pipeline, on a cluster one per master. EVAL
    carries the script each time, so no server (a replica just promoted, say) can lack it."""

    def step(half: Half) -> Any:
        if not calls:
            return ready(half, [])
        if half.cluster:
            return then(half, initialized(half), lambda _: on_cluster(half))
        pipe = half.client.pipeline(transaction=False)
        # One server: the script is loaded once, ahead of the calls in the same round trip.
        sha = SHAS[script]
        pipe.script_load(script)
        for call in calls:
            pipe.evalsha(sha, len(call) if keys is None else keys, *call)
        return then(half, pipe.execute(), lambda replies: replies[1:])

    def on_cluster(half: Half) -> Any:
        pipe = half.client.pipeline(transaction=False)
        for call in calls:
            # (A cluster pipeline's `eval()` is something else: the command itself.)
            pipe.execute_command("EVAL", script, len(call) if keys is None else keys, *call)
        return pipe.execute()

    return step


def then(half: Half, reply: Any, read: Callable[[Any], Any]) -> Any:
    """`read` applied to a step's `reply`, both awaitable on the asyncio client."""
    if not half.awaiting:
        return read(reply)

    async def done() -> Any:
        result = read(await reply)
        return await result if inspect.isawaitable(result) else result

    return done()
