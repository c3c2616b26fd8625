"""Credential usage (key hygiene): the per-day use counts and last use of inbound credentials, and leak
reports.

Written only by the usage flusher (`hygiene.usage`), one transaction per flush, never on a request. Every
replica and worker process adds to the same rows: the counts are added by the database itself (an upsert
`uses = uses + excluded.uses`) and `last_used_at` only ever moves forward, so no writer reads a value to
write it back and concurrent flushes never lose each other's counts. Rows are written in credential-id
order, so two flushers of the same credentials on PostgreSQL lock them in the same order (no deadlock).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from watchword.store.base import Page, StoreBase, existing
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.credentials import credentials_query
from watchword.store.models import Credential, CredentialUsage, UtcDateTime

UsageKey = tuple[str, date]  # (credential id, UTC day)
ItemT = TypeVar("ItemT")
# Rows per statement: well within every backend's limit of bound parameters (SQLite's 32766, psycopg's
# 65535), so a flush after a long outage is several statements in its one transaction, never a failure.
CHUNK = 500

_credentials = Credential.__table__
# One statement executed for many rows (executemany): last_used_at only ever moves forward.
_LAST_USED_FORWARD = (
    sa.update(_credentials)
    .where(_credentials.c.id == sa.bindparam("moved_id"))
    .where(
        sa.or_(
            _credentials.c.last_used_at.is_(None),
            _credentials.c.last_used_at < sa.bindparam("used_at", type_=UtcDateTime()),
        )
    )
    .values(last_used_at=sa.bindparam("used_at", type_=UtcDateTime()))
)


def _upsert(dialect: str, rows: list[dict[str, object]]) -> sa.Insert:
    """INSERT ... ON CONFLICT (credential_id, day) DO UPDATE SET uses = uses + excluded.uses."""
    table = CredentialUsage.__table__
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(rows)
    return insert.on_conflict_do_update(
        index_elements=[table.c.credential_id, table.c.day],
        set_={"uses": table.c.uses + insert.excluded.uses},
    )


def _chunks(items: Sequence[ItemT], size: int = CHUNK) -> list[Sequence[ItemT]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class CredentialUsageQueries(StoreBase):
    async def record_usage(self, uses: Mapping[UsageKey, int], last_used: Mapping[str, datetime]) -> int:
        """Add `uses` to the per-day counts and move each credential's `last_used_at` forward to
        `last_used`, in one transaction. Credentials deleted since their use are skipped. Returns the
        number of (credential, day) rows written."""
        named = sorted({credential_id for credential_id, _ in uses} | set(last_used))
        if not named:
            return 0
        async with self._sessions.begin() as session:
            present: set[str] = set()
            for chunk in _chunks(named):
                query = select(Credential.id).where(col(Credential.id).in_(list(chunk)))
                present.update((await session.exec(query)).all())
            rows = [
                {"credential_id": key[0], "day": key[1], "uses": count}
                for key, count in sorted(uses.items())
                if key[0] in present and count > 0
            ]
            for chunk in _chunks(rows):
                await session.exec(_upsert(self.engine.dialect.name, list(chunk)))  # type: ignore[call-overload]
            moved = [{"moved_id": i, "used_at": t} for i, t in sorted(last_used.items()) if i in present]
            if moved:
                await session.exec(_LAST_USED_FORWARD, params=moved)  # type: ignore[call-overload]
        return len(rows)

    async def credential_with_daily_usage(
        self, credential_id: str, since: date
    ) -> tuple[Credential, list[tuple[date, int]]] | None:
        """A credential and its uses per day from `since` on (oldest first), or None. One statement, so
        one snapshot: a flush committing meanwhile shows in both or in neither (never uses counted with
        no last use)."""
        table = CredentialUsage.__table__
        joined = sa.and_(table.c.credential_id == col(Credential.id), table.c.day >= since)
        query = (
            select(Credential, table.c.day, table.c.uses)
            .outerjoin(table, joined)
            .where(col(Credential.id) == credential_id)
            .order_by(table.c.day)
        )
        async with self._sessions() as session:
            rows = (await session.exec(query)).all()
        if not rows:
            return None
        return rows[0][0], [(day, int(uses)) for _, day, uses in rows if day is not None]

    async def list_credentials_with_usage(
        self,
        organization_id: str | None,
        since: date,
        kind: int = 0,
        application_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        unused_since: datetime | None = None,
    ) -> Page[tuple[Credential, int]]:
        """`list_credentials`, each credential with its uses from `since` on, in the same statement (one
        snapshot, as `credential_with_daily_usage`)."""
        table = CredentialUsage.__table__
        uses = (
            sa.select(sa.func.coalesce(sa.func.sum(table.c.uses), 0))
            .where(table.c.credential_id == col(Credential.id), table.c.day >= since)
            .scalar_subquery()
        )
        query = credentials_query(organization_id, kind, application_id, unused_since, uses)
        page = await self._listing(query, col(Credential.id), page_size, page_token, organization_id)
        return Page([(row[0], int(row[1])) for row in page.items], page.next_page_token)

    async def usage_since(self, credential_ids: Sequence[str], since: date) -> dict[str, int]:
        """Each credential's uses on `since` and the days after it (credentials never used: absent)."""
        if not credential_ids:
            return {}
        table = CredentialUsage.__table__
        query = (
            sa.select(table.c.credential_id, sa.func.sum(table.c.uses))
            .where(table.c.credential_id.in_(list(credential_ids)), table.c.day >= since)
            .group_by(table.c.credential_id)
        )
        async with self._sessions() as session:
            rows = (await session.exec(query)).all()  # type: ignore[call-overload]
        return {row[0]: int(row[1]) for row in rows}

    async def daily_usage(self, credential_id: str, since: date) -> list[tuple[date, int]]:
        """One credential's uses per day from `since` on, oldest first (days without use: absent)."""
        table = CredentialUsage.__table__
        query = (
            sa.select(table.c.day, table.c.uses)
            .where(table.c.credential_id == credential_id, table.c.day >= since)
            .order_by(table.c.day)
        )
        async with self._sessions() as session:
            rows = (await session.exec(query)).all()  # type: ignore[call-overload]
        return [(row[0], int(row[1])) for row in rows]

    async def prune_usage(self, before: date) -> int:
        """Drop the per-day counts older than `before` (the retention); returns how many rows went."""
        table = CredentialUsage.__table__
        async with self._sessions.begin() as session:
            result = await session.exec(sa.delete(table).where(table.c.day < before))  # type: ignore[call-overload]
        return int(result.rowcount or 0)

    async def flag_leaked_credential(self, credential_id: str, now: datetime) -> Credential:
        """Record that the credential's secret was reported leaked (it keeps working: `flag` mode). No
        change event: nothing a decision reads has changed."""
        async with self._sessions.begin() as session:
            credential = await existing(session, Credential, credential_id, "credential", for_update=True)
            if credential.leak_reported_at is None:
                credential.leak_reported_at = now
        return credential

    async def deactivate_leaked_credential(self, credential_id: str, now: datetime) -> Credential:
        """Deactivate a credential whose secret was reported leaked, and record the report, in one
        transaction that announces the change: every replica's caches drop it, as for DeactivateCredential."""
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.CREDENTIAL, (credential_id,)))
            credential = await existing(session, Credential, credential_id, "credential", for_update=True)
            credential.leak_reported_at = credential.leak_reported_at or now
            credential.deactivated_at = credential.deactivated_at or now
        return credential
