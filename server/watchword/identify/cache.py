"""A small time-bounded cache in front of the store, so verifying a known credential costs no query.

Freshness: an entry is dropped the moment a change to it is committed, on this replica at once and on the
others when the change feed delivers the event (`watchword.invalidation`). Whatever happens to the feed
(a lost event, the listen connection down), no entry is served more than `ttl` seconds after it was
loaded. Misses are cached too (bounded), so floods of unknown ids cost one query per id
per `ttl`; concurrent misses for one key share a single query.

Store outages: with `serve_stale_during_outage(grace)`, a load that fails because the store cannot be
reached answers with the last value loaded for that key, if it was loaded less than `grace` seconds ago.
Only values are served stale, never an absence (a stale "not found" or "not revoked" could turn into an
allow); an entry invalidated by this replica is gone and is never served; every other failure raises.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from watchword.store.database import is_store_outage

ValueT = TypeVar("ValueT")

DEFAULT_TTL_SECONDS = 1.0
DEFAULT_MAX_ENTRIES = 10_000  # `cache_max_entries`; README, Performance, says what it costs


def trim_oldest(entries: dict[Any, Any], max_entries: int) -> None:
    """Keep a plain dict used as a cache within `max_entries`, dropping the oldest inserted first: every
    cache a replica keeps is bounded by entries, so its memory is too (README, Performance)."""
    while len(entries) > max_entries:
        del entries[next(iter(entries))]


class TtlCache(Generic[ValueT]):
    def __init__(
        self,
        load: Callable[[str], Awaitable[ValueT | None]],
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, ValueT | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[ValueT | None]] = {}
        self._generation = 0
        self._outage_grace = 0.0
        self.hits = 0
        self.misses = 0
        self.stale_served = 0  # answers given from a stale entry during a store outage

    async def get(self, key: str) -> ValueT | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            self.hits += 1
            self._entries.move_to_end(key)
            return entry[1]
        self.misses += 1
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ValueT | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        generation = self._generation
        try:
            value = await self._load(key)
        except BaseException as exc:
            stale = self._stale_during_outage(key, exc)
            if stale is not None:
                future.set_result(stale)
                return stale
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._loading.pop(key, None)
        # A change made while the query ran must not be overwritten by what the query saw before it.
        if generation == self._generation:
            self._remember(key, value)
        future.set_result(value)
        return value

    async def load_many(
        self, keys: Iterable[str], load: Callable[[list[str]], Awaitable[dict[str, ValueT]]]
    ) -> int:
        """Load every key not fresh here with one call of `load` (a batch's credentials: one query, not
        one per key); absent keys are remembered as misses. How many keys were loaded."""
        now = self._clock()
        missing = [
            key for key in dict.fromkeys(keys) if not self._fresh(key, now) and key not in self._loading
        ]
        if not missing:
            return 0
        generation = self._generation
        values = await load(missing)
        # As in `get`: a change made while the query ran must not be overwritten by what it saw before.
        if generation == self._generation:
            for key in missing:
                self._remember(key, values.get(key))
        return len(missing)

    def _fresh(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[0] > now

    def serve_stale_during_outage(self, grace: float) -> None:
        """Answer from entries loaded less than `grace` seconds ago when the store is unreachable."""
        self._outage_grace = grace

    def _stale_during_outage(self, key: str, exc: BaseException) -> ValueT | None:
        if self._outage_grace <= 0 or not is_store_outage(exc):
            return None
        entry = self._entries.get(key)
        if entry is None or entry[1] is None:
            return None  # never loaded, invalidated, or an absence: not safe to answer from
        loaded_at = entry[0] - self._ttl
        if self._clock() - loaded_at >= self._outage_grace:
            return None
        self.stale_served += 1
        return entry[1]

    def _remember(self, key: str, value: ValueT | None) -> None:
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: str) -> None:
        self._generation += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
