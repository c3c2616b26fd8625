"""One dedicated LISTEN connection per replica, receiving the change feed of every replica (PostgreSQL).

The connection is separate from the store's pool: it sits idle in LISTEN for the life of the replica.
When it drops (database restart, network, `pg_terminate_backend`), it comes back with capped, jittered
exponential backoff. Every (re)connection calls `on_connected` once LISTEN is active: events committed
while nobody listened are lost, so the replica flushes its caches then. A connection that silently
died (no error, no traffic) is caught by a `SELECT 1` after `heartbeat_seconds` without a notification.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql

from watchword.store.background import BackgroundTask
from watchword.store.change_feed import CHANNEL, BadPayload, Change, parse
from watchword.store.database import sync_url

log = logging.getLogger("watchword.change_feed")

APPLICATION_NAME_PREFIX = "watchword-change-feed"
CONNECT_TIMEOUT_SECONDS = 5
MIN_BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 5.0
HEARTBEAT_SECONDS = 10.0

OnChange = Callable[[Change], Awaitable[None]]
OnConnected = Callable[[], Awaitable[None]]


def conninfo(database_url: str) -> str:
    """libpq's URL form of the configured database URL (without SQLAlchemy's driver suffix)."""
    return sync_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeListener:
    def __init__(
        self,
        database_url: str,
        on_change: OnChange,
        on_connected: OnConnected,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        min_backoff: float = MIN_BACKOFF_SECONDS,
        max_backoff: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        self._conninfo = conninfo(database_url)
        self._on_change = on_change
        self._on_connected = on_connected
        self._heartbeat = heartbeat_seconds
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        # Names this replica's connection in pg_stat_activity (operators, and the tests, find it there).
        self.application_name = f"{APPLICATION_NAME_PREFIX}:{os.getpid()}"
        self.connected = asyncio.Event()
        self.connections = 0  # successful (re)connections so far
        self._task = BackgroundTask(self._run, "watchword change feed")

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        backoff = self._min_backoff
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The reason only: connection errors carry no secrets, but never the conninfo itself.
                log.warning("change feed connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                if self.connected.is_set():
                    backoff = self._min_backoff
                self.connected.clear()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not a secret)
            backoff = min(backoff * 2, self._max_backoff)

    async def _listen_once(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=self.application_name,
        )
        async with connection:
            await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            self.connections += 1
            self.connected.set()
            log.info("change feed listening (connection %d)", self.connections)
            # Only now, with LISTEN active: whatever changed before is reloaded from the store.
            await self._on_connected()
            while True:
                async for notification in connection.notifies(timeout=self._heartbeat):
                    await self.receive(notification.payload)
                # Quiet for a while: prove the connection is alive (a vanished peer raises nothing).
                await asyncio.wait_for(connection.execute("SELECT 1"), self._heartbeat)

    async def receive(self, payload: str) -> None:
        """Parse and hand on one notification; a bad one is logged and skipped, never fatal."""
        try:
            change = parse(payload)
        except BadPayload as exc:
            log.warning("ignoring a change notification that is not an event: %s", exc)
            return
        try:
            await self._on_change(change)
        except Exception:
            log.exception("applying change %s %s failed", change.kind, change.ids)
