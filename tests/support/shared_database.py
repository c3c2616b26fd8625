"""Settings for Watchword replicas sharing a new PostgreSQL database, migrated before any of them starts."""

from __future__ import annotations

from pathlib import Path

from watchword.crypto import master_key

from support.cli import migrate
from support.postgres import PostgresServer

# Production mode, with the default issuer (urn:watchword), which is not an https URL.
PRODUCTION = {"WATCHWORD_MODE": "production", "WATCHWORD_ALLOW_NON_HTTPS_ISSUER": "true"}


def shared_database_settings(
    postgres: PostgresServer, database: str, directory: Path, **settings: str
) -> dict[str, str]:
    """`database` created on `postgres` and migrated; a master key file in `directory`; plus `settings`."""
    key_file = directory / "master.key"
    key_file.write_text(master_key.generate())
    env = {
        "WATCHWORD_DATABASE_URL": postgres.create_database(database),
        "WATCHWORD_MASTER_KEY_FILE": str(key_file),
        **settings,
    }
    migrate(env)
    return env
