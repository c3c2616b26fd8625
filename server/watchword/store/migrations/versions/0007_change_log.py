"""change log: the change feed of the processes sharing one SQLite file

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:30:00.000000

With worker processes (`watchword serve --workers N`) several processes share the embedded SQLite store,
and SQLite has no LISTEN/NOTIFY: each write that affects a decision also appends its change here, in its
own transaction, and every process follows the table (`store.change_log`). The table is created on
PostgreSQL too, so both backends have one schema, but stays empty there: PostgreSQL's feed is NOTIFY, and
its sequence values are not handed out in commit order, which a follower reading "after the last id"
needs. SQLite serializes writers, so there they are.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,  # ids never reused, even after the newest rows are deleted
    )


def downgrade() -> None:
    op.drop_table("change_log")
