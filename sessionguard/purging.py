"""`purge_expired`: a store's expired records removed, each reported to the app's hooks.

`store.purge_expired()` (and `sessionguard purge`) only count what they remove. An app
that audits sessions (how long they lasted, how many a user has) runs its cron job with
this instead, and its hooks get an `expired` event with reason `"purged"` for each
record removed, named as every other event names it (`Event.session`, a short hash of
the record's store key).

On Redis, which removes expired keys by itself, a purge finds only keys whose deadline
outlived their TTL (see `RedisStore.purge_expired_batches`): a session Redis dropped is
reported only when a request comes back for it (`expired`, reason `"missing"`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .events import Event, EventBus, EventKind, Hook
from .stores.base import PurgeProgress, ScannableStore, key_hash, total_purged

__all__ = ["purge_expired"]


def purge_expired(
    store: ScannableStore, *, hooks: Sequence[Hook] = (), batch_size: int = 1000
) -> int:
    """Remove every record of `store` past its deadline, as `store.purge_expired()` does,
    telling `hooks` of each; return how many were removed.

    Raises `StoreUnavailableError` as `store.purge_expired()` does: at once if the store
    cannot be reached, after the run if some records could not be removed (the others
    were, and were reported).
    """
    events = EventBus(hooks)

    def reported(steps: Iterator[PurgeProgress]) -> Iterator[PurgeProgress]:
        for step in steps:
            for key in step.keys:
                events.emit(Event(EventKind.EXPIRED, key_hash(key), "purged"))
            yield step

    return total_purged(reported(store.purge_expired_batches(batch_size)))
