"""Memberships: a user's roles in an organization (S1). A user is (issuer, subject): the same `sub` from
two identity providers is two users (S7)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import col, select

from watchword.store.base import (
    InvalidPageTokenError,
    Page,
    StoreBase,
    bounded_page_size,
    decode_page_token,
    encode_page_token,
    existing,
)
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.models import UNBOUND_ISSUER, Membership, Organization


def _membership_position(page_token: str) -> tuple[str, str] | None:
    """The (user id, issuer) a memberships page ended at: that listing's key is the pair."""
    key = decode_page_token(page_token)
    if key is None:
        return None
    try:
        position = json.loads(key)
    except (ValueError, RecursionError):
        position = None
    if not (isinstance(position, list) and len(position) == 2 and all(isinstance(p, str) for p in position)):
        raise InvalidPageTokenError("page_token is not one this server handed out")
    return position[0], position[1]


class MembershipQueries(StoreBase):
    async def set_membership(
        self, organization_id: str, issuer: str, user_id: str, roles: Sequence[str]
    ) -> Membership:
        async with self._writing() as (session, changes):
            changes.append(Change(ChangeKind.MEMBERSHIP, (user_id,)))
            await existing(session, Organization, organization_id, "organization")
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
        size = bounded_page_size(page_size)
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
            await existing(session, Organization, organization_id, "organization")
            rows = list((await session.exec(query)).all())
        if len(rows) <= size:
            return Page(rows, "")
        last = rows[size - 1]
        return Page(rows[:size], encode_page_token(json.dumps([last.user_id, last.issuer])))

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
            key = (organization_id, issuer, user_id)
            await session.delete(await existing(session, Membership, key, "membership"))

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
