"""The change log: the change feed of the processes that share one embedded SQLite file.

SQLite has no LISTEN/NOTIFY, so each write that affects a decision also appends its `Change` (the same
JSON as the PostgreSQL notification) to the `change_log` table, in its own transaction: a write that
rolls back leaves no entry. Every process runs a `ChangeLogFollower`, which reads the entries after the
last id it saw every `POLL_SECONDS` and hands each one on.

Ids come in commit order: SQLite serializes writers and the table is AUTOINCREMENT (ids never reused,
and a rolled-back insert gives its id back), so consecutive entries have consecutive ids. A first entry
after a hole means the follower fell behind entries already pruned (writers keep the newest
`KEEP_ENTRIES`): it asks for a flush, as a PostgreSQL replica does on reconnecting. A follower starts at
the newest entry (its caches are empty then). While the store cannot be read the follower logs once and
keeps trying; the entries wait in the table, and the caches still expire by their TTL meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from watchword.store.background import BackgroundTask
from watchword.store.change_feed import BadPayload, Change, parse

log = logging.getLogger("watchword.change_feed")

# 100 ms: a change reaches the other processes in about that (the bound is 1 s) for an idle cost of
# 0.1-0.2% of a core per process, most of it the wake-up itself (measured: README, Several replicas).
POLL_SECONDS = 0.1
BATCH = 256  # entries read per query; a longer backlog is read in several
# Writers keep this many newest entries: 100 ms of polling falls that far behind only in a burst of
# bulk writes, or when a process stalls for long; then it flushes instead.
KEEP_ENTRIES = 1000

OnChange = Callable[[Change], Awaitable[None]]
OnGap = Callable[[], Awaitable[None]]


class ChangeLogReader(Protocol):
    async def position(self) -> int: ...

    async def after(self, position: int, limit: int) -> list[tuple[int, str]]: ...

    def close(self) -> None: ...


class SqliteChangeLog:
    """Reads the log over a connection of its own, on the event loop itself.

    Through the store's pool (aiosqlite's thread hop, SQLAlchemy, the pre-ping) one poll cost about 2 ms
    of CPU, 4% of a core at 20 polls/s in every process; this costs about 25 µs. It cannot stall the
    loop: a WAL reader takes no lock a writer holds, the query reads one index range, and the busy
    timeout is 0, so a locked file fails the poll at once (retried at the next) instead of waiting."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            # mode=rw: never create a stray empty file. Autocommit: each poll reads the newest commit,
            # never an old snapshot held open.
            uri = f"{Path(self._path).absolute().as_uri()}?mode=rw"
            self._connection = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
        return self._connection

    def _query(self, sql: str, parameters: tuple[int, ...] = ()) -> list[Any]:
        try:
            return self._connect().execute(sql, parameters).fetchall()
        except sqlite3.Error:
            self.close()  # reopened at the next poll (a file replaced, a lost handle)
            raise

    async def position(self) -> int:
        """The id of the newest entry; 0 when there is none."""
        newest = self._query("SELECT MAX(id) FROM change_log")[0][0]
        return int(newest) if isinstance(newest, int) else 0

    async def after(self, position: int, limit: int) -> list[tuple[int, str]]:
        """Up to `limit` entries (id, payload) after `position`, oldest first."""
        rows = self._query(
            "SELECT id, payload FROM change_log WHERE id > ? ORDER BY id LIMIT ?", (position, limit)
        )
        # SQLite keeps whatever type was stored: a payload that is no text is malformed like bad JSON.
        return [(int(entry_id), payload if isinstance(payload, str) else "") for entry_id, payload in rows]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class ChangeLogFollower:
    def __init__(
        self,
        reader: ChangeLogReader,
        on_change: OnChange,
        on_gap: OnGap,
        *,
        poll_seconds: float = POLL_SECONDS,
        batch: int = BATCH,
    ) -> None:
        self._log = reader
        self._on_change = on_change
        self._on_gap = on_gap
        self._poll_seconds = poll_seconds
        self._batch = batch
        self.position: int | None = None  # the last entry seen; None until the log was first read
        self.gaps = 0  # times it fell behind pruned entries: for tests and metrics
        self.failing = False
        self.started = asyncio.Event()  # set once the starting position is known
        self._task = BackgroundTask(self._run, "watchword change log")

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        self._log.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
            else:
                self._recovered()
            await asyncio.sleep(self._poll_seconds)

    async def poll(self) -> None:
        """Hand on every entry after the last one seen (the first call only notes where the log is)."""
        if self.position is None:
            await self._find_start()
            return
        while True:
            entries = await self._log.after(self.position, self._batch)
            if entries and entries[0][0] != self.position + 1:
                await self._fell_behind(entries[0][0])
            for entry_id, payload in entries:
                self.position = entry_id
                await self.receive(entry_id, payload)
            if len(entries) < self._batch:
                return

    async def _find_start(self) -> None:
        self.position = await self._log.position()
        if self.failing:
            # The store was unreadable when this process started: what it cached meanwhile may be stale.
            await self._on_gap()
        self.started.set()

    async def _fell_behind(self, first: int) -> None:
        self.gaps += 1
        log.warning(
            "change log entries %d to %d were pruned before this process read them; flushing its caches",
            (self.position or 0) + 1,
            first - 1,
        )
        await self._on_gap()

    async def receive(self, entry_id: int, payload: str) -> None:
        """Parse and hand on one entry; a malformed one is logged and skipped, never fatal."""
        try:
            change = parse(payload)
        except BadPayload as exc:
            log.warning("ignoring change log entry %d that is not a change event: %s", entry_id, exc)
            return
        try:
            await self._on_change(change)
        except Exception:
            log.exception("applying change %s %s failed", change.kind, change.ids)

    def _failed(self, exc: Exception) -> None:
        if not self.failing:
            # The reason only, once per outage: the follower retries every poll.
            log.warning(
                "cannot read the change log (%s); retrying, caches expire by their TTL meanwhile",
                type(exc).__name__,
            )
        self.failing = True

    def _recovered(self) -> None:
        if self.failing:
            log.warning("the change log is readable again")
        self.failing = False
