"""Watchword's signing keys (I5): exactly one active, the superseded ones verifying until they retire."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from watchword.store.base import StoreBase
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.models import SigningKey, utcnow

# Any fixed bigint used only for this lock ('watch_k1').
_SIGNING_KEY_LOCK = 0x77617463685F6B31


class SigningKeyQueries(StoreBase):
    async def active_signing_key(self) -> SigningKey | None:
        async with self._sessions() as session:
            query = select(SigningKey).where(col(SigningKey.active).is_(True))
            return (await session.exec(query)).first()

    async def list_signing_keys(self) -> list[SigningKey]:
        async with self._sessions() as session:
            return list((await session.exec(select(SigningKey).order_by(col(SigningKey.created_at)))).all())

    async def _lock_signing_keys(self, session: AsyncSession) -> None:
        """Serialize every change of the active signing key across replicas.

        SELECT ... FOR UPDATE on the active row alone is not enough under READ COMMITTED: a second
        rotation waits on the row, then finds it no longer active and cannot see the key inserted
        meanwhile, so it would leave two active keys. A transaction-scoped advisory lock serializes
        them; the statements after it see the winner's key. SQLite serializes writers by itself."""
        if self.engine.dialect.name == "postgresql":
            await session.exec(select(sa.func.pg_advisory_xact_lock(_SIGNING_KEY_LOCK)))

    async def ensure_active_signing_key(self, candidate: SigningKey) -> SigningKey:
        """The active signing key: the existing one, or `candidate` stored as active when none is.
        Replicas starting together on a fresh database agree on one key (the advisory lock)."""
        async with self._writing() as (session, changes):
            await self._lock_signing_keys(session)
            query = select(SigningKey).where(col(SigningKey.active).is_(True)).with_for_update()
            existing = (await session.exec(query)).first()
            if existing is not None:
                return existing
            candidate.active = True
            session.add(candidate)
            changes.append(Change(ChangeKind.SIGNING_KEY, ()))
        return candidate

    async def rotate_signing_key(self, new_key: SigningKey, previous_retires_at: datetime) -> SigningKey:
        """Make `new_key` the active key and, in the same transaction, retire every key active until
        now at `previous_retires_at` (they keep verifying until then). Concurrent rotations, from this
        replica or others, serialize: exactly one key is active afterwards."""
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.SIGNING_KEY, ()))
            await self._lock_signing_keys(session)
            # The UPDATE locks the active rows (PostgreSQL). On SQLite it is the transaction's first
            # statement, so it takes the write lock (waiting out a concurrent rotation) before anything
            # is read: no stale read can follow.
            await session.exec(  # type: ignore[call-overload]
                sa.update(SigningKey)
                .where(col(SigningKey.active).is_(True))
                .values(active=False, retires_at=previous_retires_at)
                .execution_options(synchronize_session=False)
            )
            new_key.active = True
            new_key.retires_at = None
            session.add(new_key)
        return new_key

    async def signing_keys_for_jwks(self, now: datetime | None = None) -> list[SigningKey]:
        """Keys that still verify at `now`: the active one and those not yet retired, oldest first."""
        now = now or utcnow()
        query = (
            select(SigningKey)
            .where(sa.or_(col(SigningKey.retires_at).is_(None), col(SigningKey.retires_at) > now))
            .order_by(col(SigningKey.created_at), col(SigningKey.kid))
        )
        async with self._sessions() as session:
            return list((await session.exec(query)).all())
