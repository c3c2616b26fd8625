"""Dropping what a replica remembers when the store changes (S6, I6: refused everywhere within 1 s).

One code path on both backends: every write that affects a decision yields a `Change` (see
`store.change_feed`), and `InvalidationBus.apply` drops the matching entries of every cache in the
replica's registry (`watchword.caches`):

- on the replica that made the change, at once after commit (the store calls the bus), so the very next
  call there is refused;
- on PostgreSQL, on every other replica when the notification arrives over its LISTEN connection
  (`PostgresInvalidationBus`). On (re)connection the bus flushes everything, since events may have been
  lost while nobody listened. While the connection is down the caches still expire after their TTL, so a
  replica is never staler than that.

- on SQLite, on every other process sharing the file (`watchword serve --workers N`) when its follower
  reads the change log entry the write appended (`SqliteInvalidationBus`, `store.change_log`), within
  about 100 ms. A follower that fell behind pruned entries flushes everything.

Observing propagation: `delay_observers` are called with each change received from the feed and its
delay in seconds (now minus the commit-side timestamp it carries, so clock skew between replicas shows
up in it). A metrics helper appends a callable there, e.g. to record "revocation delay".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from watchword.caches import CacheRegistry
from watchword.issue.keyring import IssuingKeyring
from watchword.outbound.signer import OutboundSigner
from watchword.pipeline import Pipeline
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.change_listener import ChangeListener
from watchword.store.change_log import ChangeLogFollower, SqliteChangeLog
from watchword.store.repository import Store

log = logging.getLogger("watchword.invalidation")

DelayObserver = Callable[[Change, float], None]
FIRST_CONNECTION_WAIT_SECONDS = 5.0


# Deletions cascade (an organization's applications and credentials, an application's credentials),
# to records the event does not name: nothing cached may outlive them.
CLEARS_EVERYTHING = frozenset({ChangeKind.APPLICATION_DELETED, ChangeKind.ORGANIZATION})
RELOADS_KEY_RINGS = frozenset({ChangeKind.SIGNING_KEY})


@dataclass
class InvalidationBus:
    """In-process: applies this replica's own changes to every registered cache. The base of the
    feed-following buses."""

    caches: CacheRegistry
    delay_observers: list[DelayObserver] = field(default_factory=list)
    applied: int = 0  # changes applied so far (own and received): for tests and metrics
    flushes: int = 0

    def attach(self, store: Store) -> None:
        """Hear every change this replica's store commits."""
        store.change_observers.append(self.apply)

    async def start(self) -> None:
        """Nothing to start in process."""

    async def stop(self) -> None:
        """Nothing to stop in process."""

    async def apply(self, change: Change) -> None:
        self.applied += 1
        if change.kind in CLEARS_EVERYTHING:
            self.caches.clear()
        else:
            self.caches.invalidate(change.kind, change.ids)
        if change.kind in RELOADS_KEY_RINGS:
            await self.caches.reload_key_rings()

    async def flush(self) -> None:
        """Forget everything: the next calls reload from the store."""
        self.flushes += 1
        self.caches.clear()
        await self.caches.reload_key_rings()


@dataclass
class FeedInvalidationBus(InvalidationBus):
    """Also applies the changes of every other replica or process, received from a feed."""

    origin: str = ""  # this store's name in events: its own were applied already

    def attach(self, store: Store) -> None:
        super().attach(store)
        self.origin = store.origin

    async def receive(self, change: Change) -> None:
        delay = max(0.0, time.time() - change.at)
        for observe in self.delay_observers:
            try:
                observe(change, delay)
            except Exception:
                log.exception("a change delay observer failed")
        if change.origin and change.origin == self.origin:
            return
        await self.apply(change)


@dataclass
class PostgresInvalidationBus(FeedInvalidationBus):
    """The changes of every other replica, received over one LISTEN connection."""

    database_url: str = ""
    listener: ChangeListener | None = None

    async def start(self) -> None:
        """Start listening, and wait a little for the first connection so this replica serves with the
        feed in place; past that, it serves anyway (caches bounded by their TTL) and keeps trying."""
        if self.listener is None:
            self.listener = ChangeListener(self.database_url, self.receive, self.flush)
        self.listener.start()
        try:
            await asyncio.wait_for(self.listener.connected.wait(), FIRST_CONNECTION_WAIT_SECONDS)
        except TimeoutError:
            log.warning(
                "change feed not connected after %ss; serving with cache TTLs only until it is",
                FIRST_CONNECTION_WAIT_SECONDS,
            )

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()


@dataclass
class SqliteInvalidationBus(FeedInvalidationBus):
    """The changes of every other process on the same SQLite file, read from its change log."""

    follower: ChangeLogFollower | None = None

    def attach(self, store: Store) -> None:
        super().attach(store)
        if self.follower is None:
            reader = SqliteChangeLog(str(store.engine.url.database))
            self.follower = ChangeLogFollower(reader, self.receive, self.flush)

    async def start(self) -> None:
        """Start following from the newest entry; wait a little for that first read, like the
        PostgreSQL bus for its connection (an unreadable store is followed once it answers)."""
        assert self.follower is not None, "attach the bus to its store first"
        self.follower.start()
        try:
            await asyncio.wait_for(self.follower.started.wait(), FIRST_CONNECTION_WAIT_SECONDS)
        except TimeoutError:
            log.warning(
                "change log not readable after %ss; following it once it is", FIRST_CONNECTION_WAIT_SECONDS
            )

    async def stop(self) -> None:
        if self.follower is not None:
            await self.follower.stop()


def replica_caches(pipeline: Pipeline, signer: OutboundSigner, keyring: IssuingKeyring) -> CacheRegistry:
    """Everything this replica caches: the pipeline's caches, the outbound credentials and the issuing
    key ring. Invalidation, outage answers and metrics all iterate this one registry."""
    outbound = CacheRegistry()
    outbound.add("outbound_credentials", signer.credentials, {ChangeKind.OUTBOUND_CREDENTIAL}, counted=True)

    async def refresh_issuing_key() -> None:
        # Another replica rotated: sign with the new key at once instead of after `refresh_seconds`.
        await keyring.refresh_if_stale(max_age_seconds=0)

    outbound.add_key_ring("issuing_key", refresh_issuing_key)
    return pipeline.caches.joined(outbound)


def for_replica(store: Store, caches: CacheRegistry, database_url: str) -> InvalidationBus:
    """The bus for this replica's caches, attached to its store: following the change log on SQLite,
    with the LISTEN connection on PostgreSQL. `start()` it before serving, `stop()` it at shutdown."""
    bus: InvalidationBus
    if store.engine.dialect.name == "postgresql":
        bus = PostgresInvalidationBus(caches, database_url=database_url)
    elif store.engine.url.database not in (None, "", ":memory:"):
        bus = SqliteInvalidationBus(caches)
    else:
        bus = InvalidationBus(caches)  # an in-memory database: no other process can share it
    bus.attach(store)
    return bus
