"""One registry of what a replica caches (S6, I6): every cache is registered once, with the changes whose
ids are its keys, and whatever must reach every cache iterates the registry: invalidation
(`watchword.invalidation`), stale answers during a store outage, and the cache metrics at start-up.

A cache kept outside the registry would silently miss invalidation: `tests/test_caches.py` walks the
pipeline and fails on any cache it holds that is not registered here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from watchword.identify.cache import TtlCache
from watchword.store.change_feed import ChangeKind

log = logging.getLogger("watchword.invalidation")

Reload = Callable[[], Awaitable[None]]


class Forgetful(Protocol):
    """What invalidation needs of a cache: drop what rests on one key, or drop everything."""

    def invalidate(self, key: str) -> None: ...

    def clear(self) -> None: ...

    def __len__(self) -> int: ...


CacheT = TypeVar("CacheT", bound=Forgetful)


@dataclass(frozen=True, slots=True)
class RegisteredCache:
    name: str  # its `cache` label in watchword_cache_requests, when counted
    cache: Forgetful
    keyed_by: frozenset[ChangeKind]  # the changes whose ids are this cache's keys
    counted: bool  # its hits and misses are exported (it counts them)
    serves_stale: bool  # answers from entries loaded recently while the store is unreachable


@dataclass(frozen=True, slots=True)
class RegisteredKeyRing:
    """Signing keys, reloaded whole when a key is created or rotated (I5)."""

    name: str
    reload: Reload


class CacheRegistry:
    def __init__(self) -> None:
        self.caches: list[RegisteredCache] = []
        self.key_rings: list[RegisteredKeyRing] = []

    def add(
        self,
        name: str,
        cache: CacheT,
        keyed_by: Iterable[ChangeKind],
        *,
        counted: bool = False,
        serves_stale: bool = False,
    ) -> CacheT:
        """Register `cache` and return it. `serves_stale` only for a TtlCache of values that are safe to
        answer from during an outage (never an absence: see `identify.cache`)."""
        if serves_stale and not isinstance(cache, TtlCache):
            raise TypeError(f"cache {name!r} cannot serve stale entries: only a TtlCache can")
        if name in self.names():
            raise ValueError(f"a cache named {name!r} is registered already")
        self.caches.append(RegisteredCache(name, cache, frozenset(keyed_by), counted, serves_stale))
        return cache

    def add_key_ring(self, name: str, reload: Reload) -> None:
        self.key_rings.append(RegisteredKeyRing(name, reload))

    def joined(self, other: CacheRegistry) -> CacheRegistry:
        """One registry holding both: a replica's is the pipeline's joined with the outbound signer's."""
        both = CacheRegistry()
        both.caches = [*self.caches, *other.caches]
        both.key_rings = [*self.key_rings, *other.key_rings]
        return both

    def names(self) -> list[str]:
        return [entry.name for entry in self.caches]

    def __iter__(self) -> Iterator[RegisteredCache]:
        return iter(self.caches)

    def invalidate(self, kind: ChangeKind, keys: Iterable[str]) -> None:
        """Drop, in every cache keyed by `kind`'s ids, what rests on `keys`."""
        keys = tuple(keys)
        for entry in self.caches:
            if kind in entry.keyed_by:
                for key in keys:
                    entry.cache.invalidate(key)

    def clear(self) -> None:
        for entry in self.caches:
            entry.cache.clear()

    async def reload_key_rings(self) -> None:
        for ring in self.key_rings:
            try:
                await ring.reload()
            except Exception:
                # A ring that failed to reload still reloads on the first unknown kid it meets.
                log.exception("reloading signing keys (%s) after a change failed", ring.name)

    def serve_stale_during_outage(self, grace: float) -> None:
        """Store outages: the caches that may keep answering do so for `grace` seconds (README)."""
        for entry in self.caches:
            if entry.serves_stale:
                cast(TtlCache[Any], entry.cache).serve_stale_during_outage(grace)

    def counted(self) -> Iterator[tuple[str, Any]]:
        """(name, cache) of the caches whose hits and misses the metrics export."""
        return ((entry.name, entry.cache) for entry in self.caches if entry.counted)
