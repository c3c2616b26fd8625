"""Outbound credentials (O1-O6): what Watchword signs a customer's webhook calls with, sealed at rest."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select

from watchword.store.base import Page, StoreBase, existing
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.models import Organization, OutboundCredential, utcnow

OUTBOUND = "outbound credential"


class OutboundCredentialQueries(StoreBase):
    async def add_outbound_credential(self, credential: OutboundCredential) -> OutboundCredential:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.OUTBOUND_CREDENTIAL, (credential.id,)))
            await existing(session, Organization, credential.organization_id, "organization")
            session.add(credential)
        return credential

    async def get_outbound_credential(self, credential_id: str) -> OutboundCredential | None:
        return await self._get(OutboundCredential, credential_id)

    async def list_outbound_credentials(
        self, organization_id: str, page_size: int = 0, page_token: str = ""
    ) -> Page[OutboundCredential]:
        query = select(OutboundCredential).where(OutboundCredential.organization_id == organization_id)
        return await self._listing(query, col(OutboundCredential.id), page_size, page_token, organization_id)

    async def deactivate_outbound_credential(self, credential_id: str) -> OutboundCredential:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.OUTBOUND_CREDENTIAL, (credential_id,)))
            credential = await existing(session, OutboundCredential, credential_id, OUTBOUND)
            if credential.deactivated_at is None:
                credential.deactivated_at = utcnow()
        return credential

    async def delete_outbound_credential(self, credential_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.OUTBOUND_CREDENTIAL, (credential_id,)))
            await session.delete(await existing(session, OutboundCredential, credential_id, OUTBOUND))

    async def rotate_outbound_credential(
        self, credential_id: str, new_sealed: bytes, previous_valid_until: datetime | None
    ) -> OutboundCredential:
        """New sealed secrets; the previous ones stay usable until `previous_valid_until` (None: no)."""
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.OUTBOUND_CREDENTIAL, (credential_id,)))
            credential = await existing(session, OutboundCredential, credential_id, OUTBOUND, for_update=True)
            credential.previous_sealed_secrets = credential.sealed_secrets if previous_valid_until else None
            credential.previous_secret_valid_until = previous_valid_until
            credential.sealed_secrets = new_sealed
            credential.rotated_at = utcnow()
        return credential
