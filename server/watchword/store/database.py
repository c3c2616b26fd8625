"""Connecting to the store: one URL, an async engine for serving and a sync one for migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


# Seconds to wait for a PostgreSQL connection: an unreachable host fails the call instead of hanging it.
CONNECT_TIMEOUT_SECONDS = 5


def is_store_outage(exc: BaseException) -> bool:
    """Whether `exc` says the store cannot be reached (down, restarting, pool exhausted), as opposed to
    the store refusing a statement (a constraint, a value it cannot hold), which is no outage."""
    if isinstance(exc, DataError | IntegrityError):
        return False
    return isinstance(exc, OperationalError | DBAPIError | PoolTimeoutError | ConnectionError | OSError)


class DatabaseUrlError(ValueError):
    """The configured database URL cannot be used."""


def normalise_url(url: str) -> URL:
    """Parse an operator-given URL and check its backend ("sqlite:///path" or "postgresql://...")."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises several types for bad URLs
        raise DatabaseUrlError(f"cannot parse database URL: {exc}") from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise DatabaseUrlError(
            f"unsupported database backend {parsed.get_backend_name()!r}: use sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB"
        )
    return parsed


def async_url(url: str) -> URL:
    parsed = normalise_url(url)
    driver = "aiosqlite" if parsed.get_backend_name() == "sqlite" else "psycopg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")


def sync_url(url: str) -> URL:
    parsed = normalise_url(url)
    driver = "pysqlite" if parsed.get_backend_name() == "sqlite" else "psycopg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run beside the one writer, and the
    # busy timeout makes concurrent writers wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _enable_sqlite_pragmas(engine: sa.Engine) -> None:
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)


def create_engine(url: str) -> AsyncEngine:
    # pool_pre_ping: a connection broken by a database restart is found and replaced on checkout, so
    # the service recovers by itself when the database returns.
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if url.startswith("postgresql") else {}
    engine = create_async_engine(async_url(url), pool_pre_ping=True, connect_args=connect_args)
    _enable_sqlite_pragmas(engine.sync_engine)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config is ConfigParser-based: '%' must be doubled.
    config.set_main_option("sqlalchemy.url", sync_url(url).render_as_string(False).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent). Runs in a transaction per migration."""
    command.upgrade(alembic_config(url), revision)


async def migrate_async(url: str) -> None:
    await asyncio.to_thread(migrate, url)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            from alembic.runtime.migration import MigrationContext

            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
