"""credential usage: last use, uses per day and leak reports of inbound credentials

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 17:45:00.000000

Key hygiene (`watchword.hygiene`): each replica counts the uses of every credential in memory and adds
them, every `usage_flush_seconds`, to one row per credential and UTC day (`credential_usage`), and moves
the credential's `last_used_at` forward. `leak_reported_at` records a secret-scanning report that matched
the credential's secret. Both new columns are nullable: existing rows read as never used, never reported.
"""

import sqlalchemy as sa
from alembic import op

import watchword.store.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_used_at", watchword.store.models.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("leak_reported_at", watchword.store.models.UtcDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "credential_usage",
        sa.Column("credential_id", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("uses", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["credential_id"], ["credentials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("credential_id", "day"),
    )
    with op.batch_alter_table("credential_usage", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credential_usage_day"), ["day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("credential_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_usage_day"))
    op.drop_table("credential_usage")
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_column("leak_reported_at")
        batch_op.drop_column("last_used_at")
