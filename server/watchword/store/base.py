"""What every query of the store shares: its sessions, the write transaction that announces what it
changed, pagination, and one get-or-NotFoundError. Each aggregate's queries (`store.organizations`,
`store.credentials`, ...) build on `StoreBase`; `store.repository.Store` is all of them in one object."""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Generic, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from watchword.store.change_feed import CHANNEL, Change
from watchword.store.change_log import KEEP_ENTRIES
from watchword.store.database import create_engine, session_factory
from watchword.store.models import ChangeLogEntry, Organization

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

RowT = TypeVar("RowT", bound=SQLModel)
ChangeObserver = Callable[[Change], Awaitable[None]]

log = logging.getLogger("watchword.store")


class NotFoundError(Exception):
    """The named record does not exist."""

    def __init__(self, what: str, identifier: str) -> None:
        super().__init__(f"{what} {identifier!r} not found")
        self.what = what


class InvalidPageTokenError(ValueError):
    """A page token that this store did not hand out."""


@dataclass(frozen=True, slots=True)
class Page(Generic[RowT]):
    items: list[RowT]
    next_page_token: str


def decode_page_token(token: str) -> str | None:
    if not token:
        return None
    try:
        key = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        key = ""
    if not key or "\x00" in key:
        raise InvalidPageTokenError("page_token is not one this server handed out")
    return key


def encode_page_token(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode("utf-8")).decode("ascii")


def bounded_page_size(requested: int) -> int:
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 0 and {MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE


async def existing(
    session: AsyncSession, model: type[RowT], key: str | tuple[str, ...], what: str, for_update: bool = False
) -> RowT:
    """The row of `model` whose primary key is `key`; NotFoundError naming `what` when there is none."""
    row = await session.get(model, key, with_for_update=for_update or None)
    if row is None:
        raise NotFoundError(what, "/".join(key) if isinstance(key, tuple) else key)
    return row


class StoreBase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        # This replica's name in change events (it applies its own changes itself, after commit).
        self.origin = uuid.uuid4().hex[:16]
        # Told of every committed change that affects a decision: this replica's invalidation bus.
        self.change_observers: list[ChangeObserver] = []
        self._notifies = engine.dialect.name == "postgresql"
        # SQLite has no NOTIFY: the processes sharing its file follow the change log instead.
        self._logs_changes = engine.dialect.name == "sqlite"

    @classmethod
    def connect(cls, url: str) -> Self:
        return cls(create_engine(url))

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[tuple[AsyncSession, list[Change]]]:
        """One write transaction. The changes the body appends are announced with it: on PostgreSQL by
        pg_notify inside the transaction (delivered to every listening replica on commit, never for a
        rollback), on SQLite by a change log entry in the transaction (`store.change_log`), then to this
        replica's observers once committed."""
        changes: list[Change] = []
        async with self._sessions.begin() as session:
            yield session, changes
            changes[:] = [replace(change, at=time.time(), origin=self.origin) for change in changes]
            if self._notifies:
                for change in changes:
                    await session.exec(select(sa.func.pg_notify(CHANNEL, change.encode())))
            elif self._logs_changes and changes:
                await self._append_to_change_log(session, changes)
        for change in changes:
            await self._announce(change)

    @staticmethod
    async def _append_to_change_log(session: AsyncSession, changes: list[Change]) -> None:
        """Log the changes; the entries beyond the newest KEEP_ENTRIES go in the same transaction, which
        holds SQLite's write lock, so the table stays bounded however many processes write."""
        session.add_all(ChangeLogEntry(payload=change.encode()) for change in changes)
        await session.flush()
        table = ChangeLogEntry.__table__
        newest = sa.select(sa.func.max(table.c.id)).scalar_subquery()
        await session.exec(sa.delete(table).where(table.c.id <= newest - KEEP_ENTRIES))  # type: ignore[call-overload]

    async def _announce(self, change: Change) -> None:
        for observer in self.change_observers:
            try:
                await observer(change)
            except Exception:
                # The write has committed: a failing observer must not turn it into an error.
                log.exception("applying change %s %s on this replica failed", change.kind, change.ids)

    async def _paginate(
        self, session: AsyncSession, query: Any, key: Any, size: int, page_token: str
    ) -> Page[Any]:
        size = bounded_page_size(size)
        after = decode_page_token(page_token)
        if after is not None:
            query = query.where(key > after)
        rows = list((await session.exec(query.order_by(key).limit(size + 1))).all())
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            # A row of several columns (a model and computed values) pages by its model's key.
            item = last[0] if isinstance(last, sa.Row) else last
            return Page(rows, encode_page_token(str(getattr(item, key.key))))
        return Page(rows, "")

    async def _get(self, model: type[RowT], key: str) -> RowT | None:
        """The row of `model` whose primary key is `key`, or None (a lookup that caches may remember)."""
        async with self._sessions() as session:
            return await session.get(model, key)

    async def _listing(
        self, query: Any, key: Any, size: int, page_token: str, organization_id: str | None
    ) -> Page[Any]:
        """One page of `query` ordered by `key`, within an organization that must exist (None: none)."""
        async with self._sessions() as session:
            if organization_id is not None:
                await existing(session, Organization, organization_id, "organization")
            return await self._paginate(session, query, key, size, page_token)
