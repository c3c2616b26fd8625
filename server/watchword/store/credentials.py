"""Inbound credentials (C2-C9, admin tokens): stored as hashes, and for the kinds whose secret is a key
Watchword must use, sealed. A credential of an application belongs to that application's organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from watchword.store.base import NotFoundError, Page, StoreBase, existing
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.models import Application, Credential, Organization, utcnow


def credentials_query(
    organization_id: str | None,
    kind: int,
    application_id: str,
    unused_since: datetime | None,
    *computed: Any,
) -> Any:
    """The credentials ListCredentials names: of one organization (None: the admin tokens), optionally
    of one kind, of one application, or neither used nor created since `unused_since` (key hygiene).
    With `computed` columns, rows of the credential and those values."""
    query = select(Credential, *computed).where(Credential.organization_id == organization_id)
    if unused_since is not None:
        last_seen = sa.func.coalesce(col(Credential.last_used_at), col(Credential.created_at))
        query = query.where(last_seen < unused_since)
    if kind:
        query = query.where(Credential.kind == kind)
    if application_id:
        query = query.where(Credential.application_id == application_id)
    return query


class CredentialQueries(StoreBase):
    async def add_credential(self, credential: Credential) -> Credential:
        async with self._writing() as (session, changes):
            # A C10 credential is found by its service identity too: caches keyed by it drop their miss.
            identity = (credential.service_identity,) if credential.service_identity else ()
            changes.append(Change(ChangeKind.CREDENTIAL, (credential.id, *identity)))
            organization_id = credential.organization_id
            if organization_id is not None:
                await existing(session, Organization, organization_id, "organization")
            if credential.application_id is not None:
                application = await session.get(Application, credential.application_id)
                if application is None or application.organization_id != credential.organization_id:
                    raise NotFoundError("application", credential.application_id)
            session.add(credential)
        return credential

    async def get_credential(self, credential_id: str) -> Credential | None:
        return await self._get(Credential, credential_id)

    async def credential_id_for_identity(self, service_identity: str) -> str | None:
        """C10: the id of the credential registered for this SPIFFE id or subject name (exact match)."""
        query = select(Credential.id).where(Credential.service_identity == service_identity)
        async with self._sessions() as session:
            return (await session.exec(query)).first()

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
        unused_since: datetime | None = None,
    ) -> Page[Credential]:
        """One organization's credentials (None: the admin tokens, which belong to none). `unused_since`:
        only those neither used nor created since then (key hygiene)."""
        query = credentials_query(organization_id, kind, application_id, unused_since)
        return await self._listing(query, col(Credential.id), page_size, page_token, organization_id)

    async def count_credentials(self, kind: int) -> int:
        async with self._sessions() as session:
            query = select(sa.func.count()).select_from(Credential).where(Credential.kind == kind)
            return int((await session.exec(query)).one())

    async def deactivate_credential(self, credential_id: str, now: datetime | None = None) -> Credential:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.CREDENTIAL, (credential_id,)))
            credential = await existing(session, Credential, credential_id, "credential")
            if credential.deactivated_at is None:
                credential.deactivated_at = now or utcnow()
        return credential

    async def delete_credential(self, credential_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.CREDENTIAL, (credential_id,)))
            await session.delete(await existing(session, Credential, credential_id, "credential"))

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
            credential = await existing(session, Credential, credential_id, "credential", for_update=True)
            keep_previous = previous_valid_until is not None
            credential.previous_secret_hash = credential.secret_hash if keep_previous else None
            credential.previous_sealed_secret = credential.sealed_secret if keep_previous else None
            credential.previous_secret_valid_until = previous_valid_until
            credential.secret_hash = new_secret_hash
            credential.sealed_secret = new_sealed_secret
            credential.rotated_at = now or utcnow()
        return credential
