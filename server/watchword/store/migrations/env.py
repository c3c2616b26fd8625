"""Alembic environment: runs migrations on the URL put in the config by `store.database`."""

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

from watchword.store import models  # noqa: F401  (registers the tables on the metadata)
from watchword.store.database import _enable_sqlite_pragmas

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
    _enable_sqlite_pragmas(engine)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `watchword migrate` against a database")
run_migrations_online()
