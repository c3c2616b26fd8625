"""service identities: the lookup key of C10 client-certificate credentials

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:00:00.000000

A C10 credential holds no secret: it is found by the SPIFFE id or subject name its client certificates
carry. One nullable column on `credentials`, unique (one credential per identity, matched exactly) and
indexed (the lookup on every first sight of a certificate). Every other kind leaves it NULL.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("service_identity", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_credentials_service_identity"), ["service_identity"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credentials_service_identity"))
        batch_op.drop_column("service_identity")
