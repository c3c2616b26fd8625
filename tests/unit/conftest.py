"""The store fixtures of the unit tests that run on both databases: SQLite here, and a fresh database on
the session's PostgreSQL (those cases are system tests)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from watchword.store import database
from watchword.store.repository import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.system)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'watchword.db'}"
    postgres = request.getfixturevalue("postgres")
    return postgres.create_database(f"store_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    await database.migrate_async(database_url)
    store = Store.connect(database_url)
    yield store
    await store.close()
