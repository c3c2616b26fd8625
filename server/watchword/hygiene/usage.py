"""Key hygiene: when each inbound credential was last used, and how often per UTC day.

The request path only counts, in memory: `UsageCounter.record` is two dict writes on the event loop (no
lock, no store write, no allocation beyond a new key's entry). A `UsageFlusher` task takes the counts every
`usage_flush_seconds` and adds them to the store in one transaction (`store.credential_usage`: an
additive upsert, so worker processes and replicas add to the same day's row). Flush windows end at UTC
midnight, so a window's uses all belong to the day of its last use.

A flush the store refuses or does not answer keeps its counts for the next one (bounded by
`max_pending`: beyond it the oldest are dropped and counted, never silently). The last flush runs when the
server stops, after the last call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from watchword.domain import CredentialKind, Principal
from watchword.store.credential_usage import UsageKey
from watchword.store.repository import Store

log = logging.getLogger("watchword.hygiene")

DEFAULT_FLUSH_SECONDS = 30.0
DEFAULT_MAX_PENDING = 100_000
DEFAULT_RETENTION_DAYS = 90
USAGE_WINDOW_DAYS = 30  # what Get/List credential call "uses in the last 30 days"
# C8 tokens name the credential they were minted from; their uses are the token's, not the credential's
# (minting them is: the exchange authenticates the credential itself).
_NOT_COUNTED = CredentialKind.WATCHWORD_TOKEN


class UsageCounter:
    """Uses since the last flush, by credential id; owned by the event loop."""

    __slots__ = ("dropped", "last_used", "max_entries", "uses")

    def __init__(self, max_entries: int = DEFAULT_MAX_PENDING) -> None:
        self.uses: dict[str, int] = {}
        self.last_used: dict[str, datetime] = {}
        self.max_entries = max_entries
        self.dropped = 0  # uses not counted because the counter was full

    def record(self, principal: Principal, now: datetime) -> None:
        """One use of the stored credential behind `principal` (none for C1 users and C8 tokens). On every
        authenticated call: an identity test, not a set lookup (an enum's hash is a Python call)."""
        credential_id = principal.credential_id
        if credential_id and principal.kind is not _NOT_COUNTED:
            self.count(credential_id, now)

    def count(self, credential_id: str, now: datetime) -> None:
        """One use of the stored credential `credential_id` (an admin token, an authenticated client)."""
        uses = self.uses
        count = uses.get(credential_id)
        if count is not None:
            uses[credential_id] = count + 1
        elif len(uses) < self.max_entries:
            uses[credential_id] = 1
        else:
            self.dropped += 1
            return
        self.last_used[credential_id] = now

    def take(self) -> tuple[dict[str, int], dict[str, datetime]]:
        """The counts so far, leaving the counter empty."""
        taken = self.uses, self.last_used
        self.uses, self.last_used = {}, {}
        return taken


@dataclass
class FlushStats:
    """For the metrics: flushes by outcome, rows written, uses dropped (counter full or pending full)."""

    flushed: int = 0
    failed: int = 0
    rows_written: int = 0
    dropped: int = 0
    pending: int = 0


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def seconds_to_midnight(now: datetime) -> float:
    tomorrow = datetime.combine(utc_day(now) + timedelta(days=1), datetime.min.time(), UTC)
    return (tomorrow - now).total_seconds()


class UsageFlusher:
    """Moves the counts of a `UsageCounter` to the store, every `interval` seconds and at stop."""

    def __init__(
        self,
        store: Store,
        counter: UsageCounter,
        interval: float = DEFAULT_FLUSH_SECONDS,
        max_pending: int = DEFAULT_MAX_PENDING,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._counter = counter
        self._interval = interval
        self._max_pending = max_pending
        self._retention = timedelta(days=retention_days)
        self._clock = clock
        self._pending: dict[UsageKey, int] = {}  # taken, not yet written
        self._pending_last: dict[str, datetime] = {}
        self._lock = asyncio.Lock()  # one flush at a time (the periodic one and the final one)
        self._task: asyncio.Task[None] | None = None
        self._pruned_on: date | None = None
        self.stats = FlushStats()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="watchword-usage-flusher")

    async def stop(self) -> None:
        """Stop the periodic flushes, then write what was counted (the server's last calls included)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(self._interval, seconds_to_midnight(self._clock()) + 0.001))
            try:
                await self.flush()
            except Exception:
                # A bug must not end the flushes for good: logged, and the counts kept for the next.
                log.exception("credential usage flush failed")

    async def flush(self) -> bool:
        """Write the counts taken so far; False when the store failed (they are kept for the next)."""
        async with self._lock:
            self._take()
            if not self._pending and not self._pending_last:
                return True
            try:
                written = await self._store.record_usage(self._pending, self._pending_last)
            except Exception as exc:
                self._failed(exc)
                return False
            self._pending, self._pending_last = {}, {}
            self.stats.flushed += 1
            self.stats.rows_written += written
            self.stats.pending = 0
            await self._prune()
            return True

    def _take(self) -> None:
        """Add the counter's counts to the pending ones, each credential's on the day of its last use."""
        uses, last_used = self._counter.take()
        self.stats.dropped += self._counter.dropped
        self._counter.dropped = 0
        pending, pending_last = self._pending, self._pending_last
        for credential_id, count in uses.items():
            used_at = last_used[credential_id]
            key = (credential_id, utc_day(used_at))
            pending[key] = pending.get(key, 0) + count
            previous = pending_last.get(credential_id)
            if previous is None or previous < used_at:
                pending_last[credential_id] = used_at
        self._bound()
        self.stats.pending = len(pending)

    def _bound(self) -> None:
        """Beyond `max_pending` rows (a long store outage), drop the oldest and count their uses."""
        pending, pending_last = self._pending, self._pending_last
        while len(pending) > self._max_pending:
            self.stats.dropped += pending.pop(next(iter(pending)))
        while len(pending_last) > self._max_pending:
            del pending_last[next(iter(pending_last))]

    def _failed(self, exc: Exception) -> None:
        self.stats.failed += 1
        log.warning(
            "could not write credential usage (%s); %d rows kept for the next flush",
            type(exc).__name__,
            len(self._pending),
        )

    async def _prune(self) -> None:
        """Once a day (the first flush of each UTC day), drop the counts older than the retention."""
        today = utc_day(self._clock())
        if self._pruned_on == today:
            return
        self._pruned_on = today
        try:
            await self._store.prune_usage(today - self._retention)
        except Exception as exc:
            log.warning("could not prune old credential usage (%s); tried again tomorrow", type(exc).__name__)
