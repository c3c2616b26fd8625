"""Queries over the store. Each public method is one transaction: it commits whole or not at all."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from watchword.store.change_feed import CHANNEL, Change, ChangeKind
from watchword.store.change_log import KEEP_ENTRIES
from watchword.store.database import create_engine, session_factory
from watchword.store.models import (
    UNBOUND_ISSUER,
    Application,
    ChangeLogEntry,
    Credential,
    Membership,
    Organization,
    OutboundCredential,
    RevokedToken,
    SigningKey,
    UsedClientAssertion,
    utcnow,
)

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


def _decode_page_token(token: str) -> str | None:
    if not token:
        return None
    try:
        key = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        key = ""
    if not key or "\x00" in key:
        raise InvalidPageTokenError("page_token is not one this server handed out")
    return key


def _encode_page_token(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode("utf-8")).decode("ascii")


def _membership_position(page_token: str) -> tuple[str, str] | None:
    """The (user id, issuer) a memberships page ended at: that listing's key is the pair."""
    key = _decode_page_token(page_token)
    if key is None:
        return None
    try:
        position = json.loads(key)
    except (ValueError, RecursionError):
        position = None
    if not (isinstance(position, list) and len(position) == 2 and all(isinstance(p, str) for p in position)):
        raise InvalidPageTokenError("page_token is not one this server handed out")
    return position[0], position[1]


def _page_size(requested: int) -> int:
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 0 and {MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE


# Any fixed bigint used only for this lock ('watch_k1').
_SIGNING_KEY_LOCK = 0x77617463685F6B31


class Store:
    """The credential store: organizations, applications, memberships, credentials, signing keys."""

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
    def connect(cls, url: str) -> Store:
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
        self, session: AsyncSession, query: Any, key: Any, page_size: int, page_token: str
    ) -> Page[Any]:
        size = _page_size(page_size)
        after = _decode_page_token(page_token)
        if after is not None:
            query = query.where(key > after)
        rows = list((await session.exec(query.order_by(key).limit(size + 1))).all())
        if len(rows) > size:
            rows = rows[:size]
            return Page(rows, _encode_page_token(str(getattr(rows[-1], key.key))))
        return Page(rows, "")

    @staticmethod
    async def _require_organization(session: AsyncSession, organization_id: str) -> None:
        if await session.get(Organization, organization_id) is None:
            raise NotFoundError("organization", organization_id)

    # ---- organizations ----

    async def create_organization(self, name: str) -> Organization:
        async with self._sessions.begin() as session:
            organization = Organization(id=str(uuid.uuid4()), name=name)
            session.add(organization)
        return organization

    async def get_organization(self, organization_id: str) -> Organization | None:
        async with self._sessions() as session:
            return await session.get(Organization, organization_id)

    async def list_organizations(self, page_size: int = 0, page_token: str = "") -> Page[Organization]:
        async with self._sessions() as session:
            return await self._paginate(
                session, select(Organization), col(Organization.id), page_size, page_token
            )

    async def delete_organization(self, organization_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.ORGANIZATION, (organization_id,)))
            organization = await session.get(Organization, organization_id)
            if organization is None:
                raise NotFoundError("organization", organization_id)
            await session.delete(organization)

    # ---- applications ----

    async def create_application(self, organization_id: str, name: str) -> Application:
        async with self._writing() as (session, changes):
            if await session.get(Organization, organization_id) is None:
                raise NotFoundError("organization", organization_id)
            application = Application(id=str(uuid.uuid4()), organization_id=organization_id, name=name)
            session.add(application)
            changes.append(Change(ChangeKind.APPLICATION_CREATED, (application.id,)))
        return application

    async def get_application(self, application_id: str) -> Application | None:
        async with self._sessions() as session:
            return await session.get(Application, application_id)

    async def list_applications(
        self, organization_id: str, page_size: int = 0, page_token: str = ""
    ) -> Page[Application]:
        query = select(Application).where(Application.organization_id == organization_id)
        async with self._sessions() as session:
            await self._require_organization(session, organization_id)
            return await self._paginate(session, query, col(Application.id), page_size, page_token)

    async def delete_application(self, application_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.APPLICATION_DELETED, (application_id,)))
            application = await session.get(Application, application_id)
            if application is None:
                raise NotFoundError("application", application_id)
            await session.delete(application)

    # ---- memberships ----
    # A user is (issuer, subject): the same `sub` from two identity providers is two users (S7).

    async def set_membership(
        self, organization_id: str, issuer: str, user_id: str, roles: Sequence[str]
    ) -> Membership:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.MEMBERSHIP, (user_id,)))
            if await session.get(Organization, organization_id) is None:
                raise NotFoundError("organization", organization_id)
            membership = await session.get(Membership, (organization_id, issuer, user_id))
            if membership is None:
                membership = Membership(
                    organization_id=organization_id, issuer=issuer, user_id=user_id, roles=list(roles)
                )
                session.add(membership)
            else:
                membership.roles = list(roles)
        return membership

    async def list_memberships(
        self, organization_id: str, page_size: int = 0, page_token: str = "", issuer: str | None = None
    ) -> Page[Membership]:
        """One organization's memberships ordered by (user id, issuer); `issuer` narrows them to one."""
        size = _page_size(page_size)
        after = _membership_position(page_token)
        query = select(Membership).where(Membership.organization_id == organization_id)
        if issuer is not None:
            query = query.where(Membership.issuer == issuer)
        if after is not None:
            user_id, after_issuer = col(Membership.user_id), col(Membership.issuer)
            query = query.where(
                sa.or_(user_id > after[0], sa.and_(user_id == after[0], after_issuer > after[1]))
            )
        query = query.order_by(col(Membership.user_id), col(Membership.issuer)).limit(size + 1)
        async with self._sessions() as session:
            await self._require_organization(session, organization_id)
            rows = list((await session.exec(query)).all())
        if len(rows) <= size:
            return Page(rows, "")
        last = rows[size - 1]
        return Page(rows[:size], _encode_page_token(json.dumps([last.user_id, last.issuer])))

    async def user_memberships(self, user_id: str) -> dict[str, list[Membership]]:
        """The stored roles of every user with this subject, by issuer (S1). Grouped so that a caller
        picks its own issuer's rows: one subject of two issuers never shares roles (S7)."""
        query = (
            select(Membership).where(Membership.user_id == user_id).order_by(col(Membership.organization_id))
        )
        async with self._sessions() as session:
            rows = (await session.exec(query)).all()
        by_issuer: dict[str, list[Membership]] = {}
        for row in rows:
            by_issuer.setdefault(row.issuer, []).append(row)
        return by_issuer

    async def delete_membership(self, organization_id: str, issuer: str, user_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.MEMBERSHIP, (user_id,)))
            membership = await session.get(Membership, (organization_id, issuer, user_id))
            if membership is None:
                raise NotFoundError("membership", f"{organization_id}/{issuer}/{user_id}")
            await session.delete(membership)

    async def count_unbound_memberships(self) -> int:
        query = select(sa.func.count()).select_from(Membership).where(Membership.issuer == UNBOUND_ISSUER)
        async with self._sessions() as session:
            return int((await session.exec(query)).one())

    async def bind_unbound_memberships(self, issuer: str) -> int:
        """Give the memberships migrated without an issuer (migration 0006) to `issuer`; returns how many.
        Where the user already holds roles from `issuer` in that organization, those (written since) win.
        One transaction; replicas starting together bind each row once. Nothing to announce: an unbound
        row granted nothing, so binding only adds roles, which caches pick up within their TTL."""
        table = sa.inspect(Membership).local_table
        twin = table.alias("twin")
        unbound = table.c.issuer == UNBOUND_ISSUER
        shadowed = sa.exists().where(
            twin.c.organization_id == table.c.organization_id,
            twin.c.user_id == table.c.user_id,
            twin.c.issuer == issuer,
        )
        async with self._sessions.begin() as session:
            await session.exec(sa.delete(table).where(unbound, shadowed))  # type: ignore[call-overload]
            result = await session.exec(  # type: ignore[call-overload]
                sa.update(table).where(unbound).values(issuer=issuer)
            )
        return int(result.rowcount or 0)

    # ---- credentials ----

    async def add_credential(self, credential: Credential) -> Credential:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.CREDENTIAL, (credential.id,)))
            organization_id = credential.organization_id
            if organization_id is not None and await session.get(Organization, organization_id) is None:
                raise NotFoundError("organization", credential.organization_id)
            if credential.application_id is not None:
                application = await session.get(Application, credential.application_id)
                if application is None or application.organization_id != credential.organization_id:
                    raise NotFoundError("application", credential.application_id)
            session.add(credential)
        return credential

    async def get_credential(self, credential_id: str) -> Credential | None:
        async with self._sessions() as session:
            return await session.get(Credential, credential_id)

    async def get_credentials(self, credential_ids: Sequence[str]) -> dict[str, Credential]:
        """The credentials that exist among `credential_ids`, in one query (a batch's, T7)."""
        if not credential_ids:
            return {}
        query = select(Credential).where(col(Credential.id).in_(list(credential_ids)))
        async with self._sessions() as session:
            return {row.id: row for row in (await session.exec(query)).all()}

    async def list_credentials(
        self,
        organization_id: str | None,
        kind: int = 0,
        application_id: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Credential]:
        query = select(Credential).where(Credential.organization_id == organization_id)
        if kind:
            query = query.where(Credential.kind == kind)
        if application_id:
            query = query.where(Credential.application_id == application_id)
        async with self._sessions() as session:
            if organization_id is not None:
                await self._require_organization(session, organization_id)
            return await self._paginate(session, query, col(Credential.id), page_size, page_token)

    async def count_credentials(self, kind: int) -> int:
        async with self._sessions() as session:
            query = select(sa.func.count()).select_from(Credential).where(Credential.kind == kind)
            return int((await session.exec(query)).one())

    async def deactivate_credential(self, credential_id: str, now: datetime | None = None) -> Credential:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.CREDENTIAL, (credential_id,)))
            credential = await session.get(Credential, credential_id)
            if credential is None:
                raise NotFoundError("credential", credential_id)
            if credential.deactivated_at is None:
                credential.deactivated_at = now or utcnow()
        return credential

    async def delete_credential(self, credential_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.CREDENTIAL, (credential_id,)))
            credential = await session.get(Credential, credential_id)
            if credential is None:
                raise NotFoundError("credential", credential_id)
            await session.delete(credential)

    async def rotate_credential(
        self,
        credential_id: str,
        new_secret_hash: str,
        new_sealed_secret: bytes | None,
        previous_valid_until: datetime | None,
        now: datetime | None = None,
    ) -> Credential:
        """Replace the secret; the old one stays valid until `previous_valid_until` (None: not at all)."""
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.CREDENTIAL, (credential_id,)))
            credential = await session.get(Credential, credential_id, with_for_update=True)
            if credential is None:
                raise NotFoundError("credential", credential_id)
            keep_previous = previous_valid_until is not None
            credential.previous_secret_hash = credential.secret_hash if keep_previous else None
            credential.previous_sealed_secret = credential.sealed_secret if keep_previous else None
            credential.previous_secret_valid_until = previous_valid_until
            credential.secret_hash = new_secret_hash
            credential.sealed_secret = new_sealed_secret
            credential.rotated_at = now or utcnow()
        return credential

    # ---- outbound credentials (O1-O6) ----

    async def add_outbound_credential(self, credential: OutboundCredential) -> OutboundCredential:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.OUTBOUND_CREDENTIAL, (credential.id,)))
            await self._require_organization(session, credential.organization_id)
            session.add(credential)
        return credential

    async def get_outbound_credential(self, credential_id: str) -> OutboundCredential | None:
        async with self._sessions() as session:
            return await session.get(OutboundCredential, credential_id)

    async def list_outbound_credentials(
        self, organization_id: str, page_size: int = 0, page_token: str = ""
    ) -> Page[OutboundCredential]:
        query = select(OutboundCredential).where(OutboundCredential.organization_id == organization_id)
        async with self._sessions() as session:
            await self._require_organization(session, organization_id)
            return await self._paginate(session, query, col(OutboundCredential.id), page_size, page_token)

    async def deactivate_outbound_credential(self, credential_id: str) -> OutboundCredential:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.OUTBOUND_CREDENTIAL, (credential_id,)))
            credential = await session.get(OutboundCredential, credential_id)
            if credential is None:
                raise NotFoundError("outbound credential", credential_id)
            if credential.deactivated_at is None:
                credential.deactivated_at = utcnow()
        return credential

    async def delete_outbound_credential(self, credential_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.OUTBOUND_CREDENTIAL, (credential_id,)))
            credential = await session.get(OutboundCredential, credential_id)
            if credential is None:
                raise NotFoundError("outbound credential", credential_id)
            await session.delete(credential)

    async def rotate_outbound_credential(
        self, credential_id: str, new_sealed: bytes, previous_valid_until: datetime | None
    ) -> OutboundCredential:
        """New sealed secrets; the previous ones stay usable until `previous_valid_until` (None: no)."""
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.OUTBOUND_CREDENTIAL, (credential_id,)))
            credential = await session.get(OutboundCredential, credential_id, with_for_update=True)
            if credential is None:
                raise NotFoundError("outbound credential", credential_id)
            credential.previous_sealed_secrets = credential.sealed_secrets if previous_valid_until else None
            credential.previous_secret_valid_until = previous_valid_until
            credential.sealed_secrets = new_sealed
            credential.rotated_at = utcnow()
        return credential

    # ---- revocation (I6) ----

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

    # ---- client assertions (C9 replay protection) ----

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

    # ---- signing keys ----

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
