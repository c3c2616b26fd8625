"""Key hygiene through a real PostgreSQL outage: counts taken while the database is down are kept, a flush
gives up within the store's time bound (it never holds anything up), and they all arrive once the
database is back (C5 API keys)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watchword import secret_format
from watchword.compose.replica import bounded_store
from watchword.domain import CredentialKind, Principal, Transport
from watchword.hygiene.usage import UsageCounter, UsageFlusher
from watchword.store import database, models

from support.postgres import PostgresServer

TIMEOUT_SECONDS = 1.0


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path / "pg") as server:
        yield server


async def test_c5_counts_survive_a_postgresql_restart(own_postgres: PostgresServer) -> None:
    url = own_postgres.create_database(f"usage_{uuid.uuid4().hex[:8]}")
    await database.migrate_async(url)
    store = bounded_store(url, TIMEOUT_SECONDS)  # as served: every call bounded in time
    try:
        organization = await store.create_organization("acme")
        credential_id = secret_format.new_credential_id()
        secret = secret_format.mint(CredentialKind.API_KEY, credential_id)
        await store.add_credential(
            models.Credential(
                id=credential_id,
                kind=int(CredentialKind.API_KEY),
                organization_id=organization.id,
                name="k",
                secret_hash=secret_format.hash_secret(secret),
                secret_hint=secret_format.hint(secret),
            )
        )
        counter = UsageCounter()
        flusher = UsageFlusher(store, counter)
        principal = Principal(
            id=credential_id,
            kind=CredentialKind.API_KEY,
            transport=Transport.BEARER,
            credential_id=credential_id,
        )
        counter.record(principal, datetime.now(UTC))
        assert await flusher.flush()

        await asyncio.to_thread(own_postgres.stop)
        for _ in range(4):
            counter.record(principal, datetime.now(UTC))
        started = time.monotonic()
        assert not await flusher.flush()
        assert time.monotonic() - started < TIMEOUT_SECONDS + 1.0
        counter.record(principal, datetime.now(UTC))
        assert not await flusher.flush()
        assert flusher.stats.failed == 2

        await asyncio.to_thread(own_postgres.start)
        deadline = time.monotonic() + 20
        while not await flusher.flush():  # the pool finds its broken connections, the probe the store
            assert time.monotonic() < deadline, "the flush never succeeded after the restart"
            await asyncio.sleep(0.2)
        assert await store.usage_since([credential_id], datetime.now(UTC).date()) == {credential_id: 6}
        assert flusher.stats.dropped == 0
    finally:
        await store.close()
