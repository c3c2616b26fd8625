"""What the store remembers of tokens: revoked `jti`s (I6) and used client assertion `jti`s (C9)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from watchword.store.base import StoreBase
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.models import RevokedToken, UsedClientAssertion, utcnow


class TokenRecordQueries(StoreBase):
    async def revoke_token(self, jti: str, expires_at: datetime) -> None:
        """Revoke a token by its `jti` until `expires_at` (idempotent); expired entries are dropped."""
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.TOKEN_REVOKED, (jti,)))
            await session.exec(  # type: ignore[call-overload]
                sa.delete(RevokedToken).where(col(RevokedToken.expires_at) < utcnow())
            )
            existing = await session.get(RevokedToken, jti)
            if existing is None:
                session.add(RevokedToken(jti=jti, expires_at=expires_at))
            elif existing.expires_at < expires_at:
                existing.expires_at = expires_at

    async def is_revoked(self, jti: str) -> bool | None:
        """True when revoked; None otherwise (so a cache can hold the answer either way)."""
        async with self._sessions() as session:
            return True if await session.get(RevokedToken, jti) is not None else None

    async def use_client_assertion(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record an assertion's `jti`; False when it was already used (on any replica)."""
        try:
            async with self._sessions.begin() as session:
                await session.exec(  # type: ignore[call-overload]
                    sa.delete(UsedClientAssertion).where(col(UsedClientAssertion.expires_at) < utcnow())
                )
                session.add(UsedClientAssertion(client_id=client_id, jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        return True
