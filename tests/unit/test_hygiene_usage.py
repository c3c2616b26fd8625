"""Key hygiene: the in-memory usage counter and its flusher, on SQLite and PostgreSQL (`hygiene.usage`,
`store.credential_usage`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from watchword import secret_format
from watchword.domain import CredentialKind, Principal, Transport
from watchword.hygiene.usage import UsageCounter, UsageFlusher, seconds_to_midnight
from watchword.store import models
from watchword.store.repository import Store

DAY = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def principal(credential_id: str, kind: CredentialKind = CredentialKind.API_KEY) -> Principal:
    return Principal(id=credential_id, kind=kind, transport=Transport.BEARER, credential_id=credential_id)


async def stored_key(store: Store, organization_id: str, created_at: datetime | None = None) -> str:
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(CredentialKind.API_KEY, credential_id)
    row = models.Credential(
        id=credential_id,
        kind=int(CredentialKind.API_KEY),
        organization_id=organization_id,
        name="key",
        secret_hash=secret_format.hash_secret(secret),
        secret_hint=secret_format.hint(secret),
        created_at=created_at or datetime.now(UTC),
    )
    await store.add_credential(row)
    return credential_id


@pytest.fixture
async def organization(store: Store) -> str:
    return (await store.create_organization("acme")).id


def test_c5_counter_counts_stored_credentials_only() -> None:
    counter = UsageCounter()
    for _ in range(3):
        counter.record(principal("a" * 16), DAY)
    counter.record(principal("b" * 16), DAY + timedelta(seconds=1))
    counter.record(Principal(id="user", kind=CredentialKind.EXTERNAL_JWT, transport=Transport.BEARER), DAY)
    counter.record(principal("c" * 16, CredentialKind.WATCHWORD_TOKEN), DAY)  # the token's use, not c's
    assert counter.uses == {"a" * 16: 3, "b" * 16: 1}
    assert counter.last_used["b" * 16] == DAY + timedelta(seconds=1)
    assert counter.take() == (
        {"a" * 16: 3, "b" * 16: 1},
        {"a" * 16: DAY, "b" * 16: DAY + timedelta(seconds=1)},
    )
    assert counter.uses == {}
    assert counter.last_used == {}


def test_counter_is_bounded_and_counts_what_it_drops() -> None:
    counter = UsageCounter(max_entries=2)
    for name in "abc":
        counter.record(principal(name * 16), DAY)
    counter.record(principal("a" * 16), DAY)  # a known key still counts
    assert counter.uses == {"a" * 16: 2, "b" * 16: 1}
    assert counter.dropped == 1


def test_flush_windows_end_at_utc_midnight() -> None:
    assert seconds_to_midnight(datetime(2026, 12, 3, 23, 59, 30, tzinfo=UTC)) == 30.0
    assert seconds_to_midnight(datetime(2026, 12, 4, 0, 0, tzinfo=UTC)) == 86400.0


async def test_c5_flush_adds_per_day_counts_and_last_use(store: Store, organization: str) -> None:
    key = await stored_key(store, organization)
    counter = UsageCounter()
    flusher = UsageFlusher(store, counter, clock=lambda: DAY)
    for _ in range(5):
        counter.record(principal(key), DAY)
    assert await flusher.flush()
    counter.record(principal(key), DAY + timedelta(hours=1))
    assert await flusher.flush()
    counter.record(principal(key), DAY + timedelta(days=1))  # the next UTC day: its own row
    assert await flusher.flush()
    assert await store.daily_usage(key, date(2026, 12, 1)) == [(date(2026, 12, 3), 6), (date(2026, 12, 4), 1)]
    assert await store.usage_since([key], date(2026, 12, 4)) == {key: 1}
    assert (await store.get_credential(key)).last_used_at == DAY + timedelta(days=1)
    assert flusher.stats.flushed == 3
    assert flusher.stats.rows_written == 3


async def test_two_flushers_add_to_one_row_and_last_use_only_moves_forward(
    store: Store, organization: str, database_url: str
) -> None:
    """Two processes (two stores on one database) flush the same credential's day concurrently: the
    database adds both counts; the older last use of the slower flusher does not win."""
    key = await stored_key(store, organization)
    other = Store.connect(database_url)
    try:
        counters = UsageCounter(), UsageCounter()
        flushers = [
            UsageFlusher(s, c, clock=lambda: DAY) for s, c in zip((store, other), counters, strict=True)
        ]
        for round_ in range(5):
            for _ in range(7):
                counters[0].record(principal(key), DAY + timedelta(minutes=10))
            for _ in range(3):
                counters[1].record(principal(key), DAY)
            results = await asyncio.gather(*(flusher.flush() for flusher in flushers))
            assert all(results), round_
    finally:
        await other.close()
    assert await store.daily_usage(key, DAY.date()) == [(DAY.date(), 50)]
    assert (await store.get_credential(key)).last_used_at == DAY + timedelta(minutes=10)


class FailingStore:
    """The store during an outage: its writes fail as a refused connection does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = True

    async def record_usage(self, *args: object) -> int:
        if self.down:
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        return await self.store.record_usage(*args)  # type: ignore[arg-type]

    async def prune_usage(self, before: date) -> int:
        return await self.store.prune_usage(before)


async def test_outage_keeps_the_counts_for_the_next_flush(store: Store, organization: str) -> None:
    key = await stored_key(store, organization)
    failing = FailingStore(store)
    counter = UsageCounter()
    flusher = UsageFlusher(failing, counter, clock=lambda: DAY)  # type: ignore[arg-type]
    counter.record(principal(key), DAY - timedelta(days=1))
    assert not await flusher.flush()
    counter.record(principal(key), DAY)
    counter.record(principal(key), DAY)
    assert not await flusher.flush()
    assert flusher.stats.failed == 2
    assert flusher.stats.pending == 2
    failing.down = False
    assert await flusher.flush()
    yesterday = (DAY - timedelta(days=1)).date()
    assert await store.daily_usage(key, yesterday) == [(yesterday, 1), (DAY.date(), 2)]
    assert (await store.get_credential(key)).last_used_at == DAY
    assert flusher.stats.pending == 0
    assert flusher.stats.dropped == 0


async def test_a_long_outage_drops_the_oldest_counts_and_says_so(store: Store, organization: str) -> None:
    keys = [await stored_key(store, organization) for _ in range(3)]
    failing = FailingStore(store)
    counter = UsageCounter()
    flusher = UsageFlusher(failing, counter, max_pending=2, clock=lambda: DAY)  # type: ignore[arg-type]
    for index, key in enumerate(keys):
        for _ in range(index + 1):
            counter.record(principal(key), DAY)
        await flusher.flush()
    assert flusher.stats.dropped == 1  # the first key's one use
    failing.down = False
    assert await flusher.flush()
    assert await store.usage_since(keys, DAY.date()) == {keys[1]: 2, keys[2]: 3}


async def test_stop_flushes_what_was_counted(store: Store, organization: str) -> None:
    key = await stored_key(store, organization)
    counter = UsageCounter()
    flusher = UsageFlusher(store, counter, interval=3600)
    flusher.start()
    counter.record(principal(key), datetime.now(UTC))
    await flusher.stop()
    assert await store.usage_since([key], datetime.now(UTC).date()) == {key: 1}


async def test_periodic_flush_runs_off_the_request_path(store: Store, organization: str) -> None:
    key = await stored_key(store, organization)
    counter = UsageCounter()
    flusher = UsageFlusher(store, counter, interval=0.05)
    flusher.start()
    try:
        counter.record(principal(key), datetime.now(UTC))
        for _ in range(100):
            if flusher.stats.flushed:
                break
            await asyncio.sleep(0.02)
    finally:
        await flusher.stop()
    assert (await store.get_credential(key)).last_used_at is not None


async def test_deleted_credentials_are_skipped(store: Store, organization: str) -> None:
    kept, deleted = await stored_key(store, organization), await stored_key(store, organization)
    counter = UsageCounter()
    flusher = UsageFlusher(store, counter, clock=lambda: DAY)
    counter.record(principal(kept), DAY)
    counter.record(principal(deleted), DAY)
    await store.delete_credential(deleted)
    assert await flusher.flush()
    assert await store.usage_since([kept, deleted], DAY.date()) == {kept: 1}


async def test_old_counts_are_pruned_once_a_day(store: Store, organization: str) -> None:
    key = await stored_key(store, organization)
    counter = UsageCounter()
    flusher = UsageFlusher(store, counter, retention_days=30, clock=lambda: DAY)
    await store.record_usage({(key, (DAY - timedelta(days=40)).date()): 1}, {})
    counter.record(principal(key), DAY)
    assert await flusher.flush()
    assert await store.daily_usage(key, date(2000, 1, 1)) == [(DAY.date(), 1)]


async def test_unused_listing(store: Store, organization: str) -> None:
    now = datetime.now(UTC)
    old_unused = await stored_key(store, organization, now - timedelta(days=60))
    old_used = await stored_key(store, organization, now - timedelta(days=60))
    new_unused = await stored_key(store, organization, now - timedelta(days=1))
    await store.record_usage({(old_used, now.date()): 1}, {old_used: now - timedelta(days=2)})
    page = await store.list_credentials(organization, unused_since=now - timedelta(days=30))
    assert [row.id for row in page.items] == [old_unused]
    page = await store.list_credentials(organization, unused_since=now - timedelta(hours=1))
    assert sorted(row.id for row in page.items) == sorted([old_unused, old_used, new_unused])


async def test_a_flush_larger_than_one_statement_is_written_whole(store: Store, organization: str) -> None:
    """After a long outage a flush may hold more rows than one statement's parameters allow: chunked,
    still one transaction."""
    key = await stored_key(store, organization)
    first = date(2024, 1, 1)
    uses = {(key, first + timedelta(days=n)): 1 for n in range(1200)}
    unknown = {f"{n:016d}": DAY for n in range(1200)}  # deleted meanwhile: skipped
    assert await store.record_usage(uses, {key: DAY, **unknown}) == 1200
    assert await store.usage_since([key], first) == {key: 1200}
    assert (await store.get_credential(key)).last_used_at == DAY


async def fresh_key_used_while_read(store: Store, organization: str, read: object) -> tuple[str, object]:
    """A never-used key whose first use is flushed while `read(key)` runs: what the read saw."""
    key = await stored_key(store, organization)
    flush = store.record_usage({(key, DAY.date()): 1}, {key: DAY})
    _, seen = await asyncio.gather(flush, read(key))  # type: ignore[operator]
    return key, seen


async def test_get_reads_a_credential_and_its_counts_in_one_snapshot(store: Store, organization: str) -> None:
    """A flush that commits while GetCredential reads shows in its last use and its counts together or in
    neither: never uses counted with no last use (a CI run saw exactly that with two separate reads)."""
    for _ in range(40):
        _, seen = await fresh_key_used_while_read(
            store, organization, lambda key: store.credential_with_daily_usage(key, DAY.date())
        )
        credential, days = seen  # type: ignore[misc]
        assert (credential.last_used_at is not None) == bool(days), (credential.last_used_at, days)


async def test_list_reads_credentials_and_their_counts_in_one_snapshot(
    store: Store, organization: str
) -> None:
    for _ in range(40):
        key, seen = await fresh_key_used_while_read(
            store, organization, lambda key: store.list_credentials_with_usage(organization, DAY.date())
        )
        (credential, uses), *_ = [item for item in seen.items if item[0].id == key]  # type: ignore[attr-defined]
        assert (credential.last_used_at is not None) == (uses == 1), (credential.last_used_at, uses)


async def test_get_and_list_with_usage_answer_what_was_flushed(store: Store, organization: str) -> None:
    key = await stored_key(store, organization)
    unused = await stored_key(store, organization)
    await store.record_usage({(key, DAY.date()): 2, (key, (DAY - timedelta(days=40)).date()): 5}, {key: DAY})
    credential, days = await store.credential_with_daily_usage(key, (DAY - timedelta(days=29)).date())
    assert (credential.id, credential.last_used_at, days) == (key, DAY, [(DAY.date(), 2)])
    assert await store.credential_with_daily_usage("0" * 16, DAY.date()) is None
    page = await store.list_credentials_with_usage(
        organization, (DAY - timedelta(days=29)).date(), page_size=1
    )
    assert len(page.items) == 1
    assert page.next_page_token
    rest = await store.list_credentials_with_usage(
        organization, (DAY - timedelta(days=29)).date(), page_token=page.next_page_token
    )
    assert {c.id: uses for c, uses in page.items + rest.items} == {key: 2, unused: 0}
