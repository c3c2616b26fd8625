"""memberships keyed by (issuer, subject)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:30:00.000000

A membership used to be keyed by the user id alone, so with two identity providers a second provider's
user whose `sub` equals a first provider's user id inherited that user's stored roles (S1, S7). Rows now
carry the issuer too. A migration cannot see the configuration, so the rows it finds get the unbound
issuer "" (`models.UNBOUND_ISSUER`): they match no token until bound to an issuer, which the server does
at start when exactly one issuer is configured (what such a row always meant), and `watchword migrate
--bind-memberships-to ISSUER` does when several are. Until then they grant nothing (deny by default).
"""

import warnings

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OLD_KEY = ["organization_id", "user_id"]
_NEW_KEY = ["organization_id", "issuer", "user_id"]


def _drop_primary_key_on_postgresql() -> None:
    # SQLite's batch mode rebuilds the table with the new key; PostgreSQL alters it in place.
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("memberships_pkey", "memberships", type_="primary")


def upgrade() -> None:
    _drop_primary_key_on_postgresql()
    with warnings.catch_warnings(), op.batch_alter_table("memberships", recreate="auto") as batch_op:
        # SQLite's rebuilt table takes the new key; SQLAlchemy notes it differs from the reflected one.
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_memberships' specifies", sa.exc.SAWarning)
        batch_op.add_column(
            sa.Column(
                "issuer", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False, server_default=""
            )
        )
        batch_op.create_primary_key("memberships_pkey", _NEW_KEY)
        batch_op.create_index(batch_op.f("ix_memberships_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("memberships") as batch_op:
        batch_op.alter_column("issuer", server_default=None)  # every write names its issuer


def downgrade() -> None:
    # Refuse rather than merge: two issuers' users with one subject cannot share one row again.
    shared = op.get_bind().execute(
        sa.text(
            "SELECT COUNT(*) FROM (SELECT organization_id, user_id FROM memberships "
            "GROUP BY organization_id, user_id HAVING COUNT(*) > 1) AS shared"
        )
    )
    if shared.scalar_one():
        raise RuntimeError(
            "cannot downgrade: some organization has memberships of one subject from several issuers; "
            "delete all but one of each first"
        )
    _drop_primary_key_on_postgresql()
    with op.batch_alter_table("memberships", recreate="auto") as batch_op:
        batch_op.drop_index(batch_op.f("ix_memberships_user_id"))
        batch_op.drop_column("issuer")
        batch_op.create_primary_key("memberships_pkey", _OLD_KEY)
