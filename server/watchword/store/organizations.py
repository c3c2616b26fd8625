"""Organizations and their applications. Deleting either cascades to what belongs to it."""

from __future__ import annotations

import uuid

from sqlmodel import col, select

from watchword.store.base import Page, StoreBase, existing
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.models import Application, Organization


class OrganizationQueries(StoreBase):
    async def create_organization(self, name: str) -> Organization:
        async with self._sessions.begin() as session:
            organization = Organization(id=str(uuid.uuid4()), name=name)
            session.add(organization)
        return organization

    async def get_organization(self, organization_id: str) -> Organization | None:
        return await self._get(Organization, organization_id)

    async def list_organizations(self, page_size: int = 0, page_token: str = "") -> Page[Organization]:
        return await self._listing(select(Organization), col(Organization.id), page_size, page_token, None)

    async def delete_organization(self, organization_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.ORGANIZATION, (organization_id,)))
            await session.delete(await existing(session, Organization, organization_id, "organization"))

    # ---- applications ----

    async def create_application(self, organization_id: str, name: str) -> Application:
        async with self._writing() as (session, changes):
            await existing(session, Organization, organization_id, "organization")
            application = Application(id=str(uuid.uuid4()), organization_id=organization_id, name=name)
            session.add(application)
            changes.append(Change(ChangeKind.APPLICATION_CREATED, (application.id,)))
        return application

    async def get_application(self, application_id: str) -> Application | None:
        return await self._get(Application, application_id)

    async def list_applications(
        self, organization_id: str, page_size: int = 0, page_token: str = ""
    ) -> Page[Application]:
        query = select(Application).where(Application.organization_id == organization_id)
        return await self._listing(query, col(Application.id), page_size, page_token, organization_id)

    async def delete_application(self, application_id: str) -> None:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.APPLICATION_DELETED, (application_id,)))
            await session.delete(await existing(session, Application, application_id, "application"))
