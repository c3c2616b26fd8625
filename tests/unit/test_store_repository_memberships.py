"""S1, S7: stored memberships are keyed by (issuer, subject), on SQLite and PostgreSQL, and the rows of
the previous schema (keyed by the subject alone) migrate unbound until bound to one issuer."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from watchword.compose.replica import bind_unbound_memberships
from watchword.store import database
from watchword.store.models import UNBOUND_ISSUER
from watchword.store.repository import InvalidPageTokenError, Store

IDP_A = "https://a.example/realms/one"
IDP_B = "https://b.example/realms/two"
PREVIOUS_REVISION = "0005"  # memberships keyed by (organization, user id)


def _execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Raw SQL, as a release before migration 0006 would have written it; the last statement's rows."""
    engine = sa.create_engine(database.sync_url(url))
    try:
        with engine.begin() as connection:
            result = [connection.execute(sa.text(statement)) for statement in statements][-1]
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _previous_schema_with_memberships(url: str) -> None:
    database.migrate(url, PREVIOUS_REVISION)
    _execute(
        url,
        "INSERT INTO organizations (id, name, created_at) VALUES ('org-a', 'a', '2026-01-01 00:00:00+00')",
        "INSERT INTO organizations (id, name, created_at) VALUES ('org-b', 'b', '2026-01-01 00:00:00+00')",
        """INSERT INTO memberships (organization_id, user_id, roles)
           VALUES ('org-a', 'alice', '["admin"]'), ('org-b', 'bob', '["viewer"]')""",
    )


def _schema_matches_the_models(url: str) -> None:
    engine = sa.create_engine(database.sync_url(url))
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_s7_migration_keeps_previous_memberships_unbound_until_bound_to_one_issuer(
    database_url: str,
) -> None:
    _previous_schema_with_memberships(database_url)
    database.migrate(database_url)
    assert database.current_revision(database_url) == database.head_revision()
    _schema_matches_the_models(database_url)
    store = Store.connect(database_url)
    try:
        # Unbound: no issuer's user has them, so they grant nothing (deny by default) ...
        assert set(await store.user_memberships("alice")) == {UNBOUND_ISSUER}
        assert await store.count_unbound_memberships() == 2
        # ... and with several issuers configured nothing guesses which one they meant.
        assert await bind_unbound_memberships(store, [IDP_A, IDP_B]) == 0
        assert await store.count_unbound_memberships() == 2
        # With one issuer they are that issuer's users', as they always were.
        assert await bind_unbound_memberships(store, [IDP_A]) == 2
        alice = await store.user_memberships("alice")
        assert [(row.organization_id, row.roles) for row in alice[IDP_A]] == [("org-a", ["admin"])]
        assert set(alice) == {IDP_A}
        assert await store.count_unbound_memberships() == 0
        assert await bind_unbound_memberships(store, [IDP_A]) == 0  # every start: idempotent
    finally:
        await store.close()


async def test_s7_an_operator_binds_previous_memberships_when_several_issuers_are_configured(
    database_url: str,
) -> None:
    _previous_schema_with_memberships(database_url)
    database.migrate(database_url)
    store = Store.connect(database_url)
    try:
        # Written since the upgrade, for IDP_B: wins over the unbound row of the same user and organization.
        await store.set_membership("org-a", IDP_B, "alice", ["viewer"])
        assert await bind_unbound_memberships(store, [IDP_A, IDP_B], chosen=IDP_B) == 1
        alice = await store.user_memberships("alice")
        roles = {issuer: [row.roles for row in rows] for issuer, rows in alice.items()}
        assert roles == {IDP_B: [["viewer"]]}
        assert [row.issuer for row in (await store.user_memberships("bob"))[IDP_B]] == [IDP_B]
    finally:
        await store.close()


async def test_s7_one_subject_from_two_issuers_is_two_users_in_the_store(store: Store) -> None:
    organization = await store.create_organization("acme")
    await store.set_membership(organization.id, IDP_A, "user-1", ["admin"])
    await store.set_membership(organization.id, IDP_B, "user-1", ["viewer"])
    by_issuer = await store.user_memberships("user-1")
    assert {issuer: [row.roles for row in rows] for issuer, rows in by_issuer.items()} == {
        IDP_A: [["admin"]],
        IDP_B: [["viewer"]],
    }
    await store.delete_membership(organization.id, IDP_B, "user-1")
    assert set(await store.user_memberships("user-1")) == {IDP_A}
    only_a = await store.list_memberships(organization.id, issuer=IDP_A)
    assert [(row.issuer, row.user_id) for row in only_a.items] == [(IDP_A, "user-1")]


async def test_s7_membership_pages_list_every_issuer_of_a_shared_subject_once(store: Store) -> None:
    organization = await store.create_organization("acme")
    expected = set()
    for user_id in ("u1", "u2", "u3"):
        for issuer in (IDP_A, IDP_B):
            await store.set_membership(organization.id, issuer, user_id, ["viewer"])
            expected.add((user_id, issuer))
    seen: list[tuple[str, str]] = []
    token = ""
    while True:
        page = await store.list_memberships(organization.id, page_size=1, page_token=token)
        seen.extend((row.user_id, row.issuer) for row in page.items)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(expected)
    for bad in ("%%%", "WyJ1MSJd", "e30"):  # not base64; ["u1"]; {}
        with pytest.raises(InvalidPageTokenError):
            await store.list_memberships(organization.id, page_token=bad)


def test_s7_downgrade_refuses_to_merge_two_issuers_users_and_restores_the_previous_key(
    database_url: str,
) -> None:
    database.migrate(database_url)
    _execute(
        database_url,
        "INSERT INTO organizations (id, name, created_at) VALUES ('org-a', 'a', '2026-01-01 00:00:00+00')",
        f"""INSERT INTO memberships (organization_id, issuer, user_id, roles)
            VALUES ('org-a', '{IDP_A}', 'alice', '["admin"]')""",
        f"""INSERT INTO memberships (organization_id, issuer, user_id, roles)
            VALUES ('org-a', '{IDP_B}', 'alice', '["viewer"]')""",
    )
    config = database.alembic_config(database_url)
    with pytest.raises(RuntimeError, match="several issuers"):
        command.downgrade(config, PREVIOUS_REVISION)
    _execute(database_url, f"DELETE FROM memberships WHERE issuer = '{IDP_B}'")
    command.downgrade(config, PREVIOUS_REVISION)
    assert _execute(database_url, "SELECT organization_id, user_id FROM memberships") == [("org-a", "alice")]
    database.migrate(database_url)
    assert _execute(database_url, "SELECT issuer FROM memberships") == [(UNBOUND_ISSUER,)]
