"""How long `SQLStore` waits for PostgreSQL, bounded on the client side.

A server that stops answering (frozen, or cut off by the network) leaves its TCP
connections open, and a server-side `statement_timeout` never fires there. So each wait
of a psycopg connection for a reply is watched: `waits_bounded(timeout)` sets the bound
for the operation run inside it, and the connections `bounded_psycopg()` makes have their
socket shut down by a watchdog thread when a wait outlives it, which psycopg then reads as
a closed connection (see `_Watchdog` for why nothing gentler works).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["bounded_psycopg", "waits_bounded"]


@dataclass(slots=True)
class _Waits:
    """The bound on each wait for a reply in the operation running now, and whether one
    of its waits has run out."""

    timeout: float
    expired: bool = False


_WAITS: ContextVar[_Waits | None] = ContextVar("sessionguard_sql_waits", default=None)


@contextlib.contextmanager
def waits_bounded(timeout: float) -> Iterator[None]:
    """Bound the waits of the operation run inside (a context variable: it follows the
    thread, and the asyncio task through SQLAlchemy's greenlets)."""
    token = _WAITS.set(_Waits(timeout))
    try:
        yield
    finally:
        _WAITS.reset(token)


@dataclass(eq=False, slots=True)
class _Watch:
    fd: int
    deadline: float
    fired: bool = False


@dataclass(eq=False)
class _Watchdog:
    """One daemon thread that shuts down the socket of each connection still waiting for
    a reply at its deadline.

    Shutting the socket down wakes the wait at once, whatever it is blocked in (libpq's
    poll under a blocking connection, the event loop under an asyncio one), as a closed
    connection. The alternatives do not work against a server that is frozen or cut off:
    its TCP stack (or the lack of any packet) leaves the connection open, so keepalives
    and `tcp_user_timeout` never fire on a frozen one; a blocking connection cannot be
    interrupted otherwise; and cancelling an asyncio task makes psycopg send the server a
    cancel request and wait up to 10 s more for it.

    Only waits in progress are watched, at most one per connection, so the set stays as
    small as the pools; the thread sleeps until the earliest deadline.
    """

    condition: threading.Condition = field(default_factory=threading.Condition)
    watches: set[_Watch] = field(default_factory=set)
    wake_at: float = math.inf
    thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, fd: int, timeout: float) -> Iterator[_Watch]:
        watch = _Watch(fd, time.monotonic() + timeout)
        with self.condition:
            self.watches.add(watch)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name="sessionguard-sql-watchdog", daemon=True
                )
                self.thread.start()
            elif watch.deadline < self.wake_at:
                self.condition.notify()
        try:
            yield watch
        finally:
            # Under the lock: once this returns, the thread never touches `fd` again.
            with self.condition:
                self.watches.discard(watch)

    def _run(self) -> None:
        with self.condition:
            while True:
                now = time.monotonic()
                for watch in [watch for watch in self.watches if watch.deadline <= now]:
                    self.watches.discard(watch)
                    watch.fired = True
                    _shut_down(watch.fd)
                self.wake_at = min((watch.deadline for watch in self.watches), default=math.inf)
                self.condition.wait(None if self.wake_at == math.inf else self.wake_at - now)


_WATCHDOG = _Watchdog()


def _forget_parent_watchdog() -> None:
    # A forked child (a server's worker) has no watchdog thread, and the lock may have
    # been taken by the parent's at the moment of the fork.
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_forget_parent_watchdog)


def _shut_down(fd: int) -> None:
    # On a duplicate: shutdown() acts on the connection itself, which its owner then
    # reads as closed, and closing the duplicate leaves the owner's descriptor alone.
    try:
        duplicate = os.dup(fd)
    except OSError:
        return
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return
    with sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True, slots=True)
class _Connectors:
    """psycopg's `connect` for SQLAlchemy's sync and asyncio dialects, making connections
    whose every wait for a reply is watched."""

    connect: Callable[..., Any]
    aconnect: Callable[..., Awaitable[Any]]


@functools.cache
def bounded_psycopg() -> _Connectors:
    import psycopg  # here: SQLite needs no psycopg

    def timed_out(waits: _Waits) -> psycopg.OperationalError:
        return psycopg.OperationalError(
            f"PostgreSQL sent no reply within {waits.timeout:g} s (io_timeout); "
            "the connection was closed"
        )

    def refuse_after_timeout() -> None:
        waits = _WAITS.get()
        if waits is not None and waits.expired:
            # The pool reconnects when its pre-ping fails; after a timeout that would
            # only add `connect_timeout` to the wait for the 503.
            raise timed_out(waits)

    @contextlib.contextmanager
    def bounded(connection: psycopg.BaseConnection[Any]) -> Iterator[None]:
        waits = _WAITS.get()
        try:
            fd = connection.pgconn.socket if waits is not None else None
        except psycopg.Error:  # already closed: the wait fails by itself
            fd = None
        if waits is None or fd is None:
            yield
            return
        failure: psycopg.Error | None = None
        with _WATCHDOG.watching(fd, waits.timeout) as watch:
            try:
                yield
            except psycopg.Error as exc:
                failure = exc
        if watch.fired:
            waits.expired = True
            connection.pgconn.finish()  # closed, so SQLAlchemy drops it from the pool
            raise timed_out(waits) from failure
        if failure is not None:
            raise failure

    class Connection(psycopg.Connection[Any]):
        def wait(self, *args: Any, **kwargs: Any) -> Any:
            with bounded(self):
                return super().wait(*args, **kwargs)

    class AsyncConnection(psycopg.AsyncConnection[Any]):
        async def wait(self, *args: Any, **kwargs: Any) -> Any:
            with bounded(self):
                return await super().wait(*args, **kwargs)

    def connect(*args: Any, **kwargs: Any) -> Connection:
        refuse_after_timeout()
        return Connection.connect(*args, **kwargs)

    async def aconnect(*args: Any, **kwargs: Any) -> AsyncConnection:
        refuse_after_timeout()
        return await AsyncConnection.connect(*args, **kwargs)

    return _Connectors(connect, aconnect)
