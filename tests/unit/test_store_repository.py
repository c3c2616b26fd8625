"""The store on SQLite (embedded default) and PostgreSQL: migrations, transactions, hashes only."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from watchword import secret_format
from watchword.domain import CredentialKind
from watchword.store import database, models
from watchword.store.repository import InvalidPageTokenError, NotFoundError, Store

IDP = "https://idp.example"


def new_credential(
    organization_id: str | None, kind: CredentialKind = CredentialKind.API_KEY, **fields: object
):
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(kind, credential_id)
    row = models.Credential(
        id=credential_id,
        kind=int(kind),
        organization_id=organization_id,
        name="test",
        secret_hash=secret_format.hash_secret(secret),
        secret_hint=secret_format.hint(secret),
        **fields,
    )
    return row, secret


def test_migrations_are_idempotent_and_match_the_models(database_url: str) -> None:
    database.migrate(database_url)
    database.migrate(database_url)
    assert database.current_revision(database_url) == database.head_revision()
    engine = sa.create_engine(database.sync_url(database_url))
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_organization_application_membership_round_trip(store: Store) -> None:
    organization = await store.create_organization("acme")
    application = await store.create_application(organization.id, "billing")
    assert (await store.get_application(application.id)).organization_id == organization.id
    await store.set_membership(organization.id, IDP, "user-1", ["viewer"])
    await store.set_membership(organization.id, IDP, "user-1", ["admin", "editor"])
    memberships = (await store.list_memberships(organization.id)).items
    assert [(m.user_id, m.roles) for m in memberships] == [("user-1", ["admin", "editor"])]
    fetched = await store.get_organization(organization.id)
    assert fetched is not None
    assert fetched.created_at.tzinfo is not None


async def test_deleting_an_organization_removes_everything_in_it(store: Store) -> None:
    organization = await store.create_organization("acme")
    application = await store.create_application(organization.id, "billing")
    row, _ = new_credential(organization.id, CredentialKind.APPLICATION_SECRET, application_id=application.id)
    await store.add_credential(row)
    await store.set_membership(organization.id, IDP, "u", ["viewer"])
    await store.delete_organization(organization.id)
    assert await store.get_application(application.id) is None
    assert await store.get_credential(row.id) is None
    with pytest.raises(NotFoundError):
        await store.list_memberships(organization.id)
    assert await store.get_organization(organization.id) is None


async def test_failed_writes_leave_nothing_behind(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.create_application(str(uuid.uuid4()), "orphan")
    organization = await store.create_organization("acme")
    other = await store.create_organization("other")
    foreign_app = await store.create_application(other.id, "theirs")
    row, _ = new_credential(organization.id, CredentialKind.APPLICATION_SECRET, application_id=foreign_app.id)
    with pytest.raises(NotFoundError):
        await store.add_credential(row)
    assert await store.get_credential(row.id) is None
    first, _ = new_credential(organization.id)
    await store.add_credential(first)
    duplicate, _ = new_credential(organization.id)
    duplicate.id = first.id
    with pytest.raises(IntegrityError):
        await store.add_credential(duplicate)
    assert (await store.get_credential(first.id)).secret_hash == first.secret_hash
    assert len((await store.list_credentials(organization.id)).items) == 1


async def test_deactivation_and_rotation_keep_an_overlap(store: Store) -> None:
    organization = await store.create_organization("acme")
    row, secret = new_credential(organization.id)
    await store.add_credential(row)
    until = datetime.now(UTC) + timedelta(minutes=5)
    new_secret = secret_format.mint(CredentialKind.API_KEY, row.id)
    rotated = await store.rotate_credential(row.id, secret_format.hash_secret(new_secret), None, until)
    assert rotated.previous_secret_hash == secret_format.hash_secret(secret)
    assert rotated.previous_secret_valid_until == until
    assert secret_format.secret_matches(new_secret, rotated.secret_hash)
    deactivated = await store.deactivate_credential(row.id)
    assert deactivated.deactivated_at is not None
    again = await store.deactivate_credential(row.id)
    assert again.deactivated_at == deactivated.deactivated_at
    with pytest.raises(NotFoundError):
        await store.deactivate_credential("x" * 16)


async def test_listing_pages_through_everything_once(store: Store) -> None:
    organization = await store.create_organization("acme")
    created = set()
    for _ in range(7):
        row, _ = new_credential(organization.id)
        await store.add_credential(row)
        created.add(row.id)
    seen: list[str] = []
    token = ""
    while True:
        page = await store.list_credentials(organization.id, page_size=3, page_token=token)
        seen.extend(row.id for row in page.items)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(created)
    with pytest.raises(InvalidPageTokenError):
        await store.list_credentials(organization.id, page_token="%%%")
    with pytest.raises(ValueError, match="page_size"):
        await store.list_credentials(organization.id, page_size=100000)


async def test_naive_datetimes_are_refused(store: Store) -> None:
    organization = await store.create_organization("acme")
    row, _ = new_credential(organization.id, expires_at=datetime(2030, 1, 1))
    with pytest.raises(Exception, match="naive datetime"):
        await store.add_credential(row)


async def test_only_hashes_of_inbound_secrets_reach_the_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    await database.migrate_async(url)
    store = Store.connect(url)
    organization = await store.create_organization("acme")
    row, secret = new_credential(organization.id)
    await store.add_credential(row)
    await store.close()
    with sqlite3.connect(tmp_path / "w.db") as connection:
        dump = "\n".join(connection.iterdump())
    assert secret not in dump
    assert secret[len(secret_format.hint(secret)) :] not in dump
    assert secret_format.hash_secret(secret) in dump


def test_bad_database_urls_are_explained() -> None:
    with pytest.raises(database.DatabaseUrlError, match="unsupported database backend"):
        database.normalise_url("oracle://x")
    with pytest.raises(database.DatabaseUrlError, match="cannot parse"):
        database.normalise_url("::::")
