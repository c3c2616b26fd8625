"""The verification cache: hits cost no query, changes on this replica are seen at once (S6)."""

from __future__ import annotations

import asyncio

import pytest

from watchword.identify.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.queries = 0
        self.delay = 0.0

    async def get(self, key: str) -> str | None:
        self.queries += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.values.get(key)


async def test_hits_cost_no_query_until_the_ttl_runs_out() -> None:
    clock, store = Clock(), CountingStore({"a": "1"})
    cache = TtlCache(store.get, ttl=1.0, clock=clock)
    assert [await cache.get("a") for _ in range(100)] == ["1"] * 100
    assert store.queries == 1
    clock.now = 1.01
    store.values["a"] = "2"
    assert await cache.get("a") == "2"
    assert store.queries == 2


async def test_misses_are_cached_too() -> None:
    clock, store = Clock(), CountingStore({})
    cache = TtlCache(store.get, ttl=1.0, clock=clock)
    for _ in range(50):
        assert await cache.get("nope") is None
    assert store.queries == 1


async def test_s6_invalidation_is_seen_on_the_very_next_call() -> None:
    clock, store = Clock(), CountingStore({"a": "active"})
    cache = TtlCache(store.get, ttl=60.0, clock=clock)
    assert await cache.get("a") == "active"
    store.values["a"] = "deactivated"
    cache.invalidate("a")
    assert await cache.get("a") == "deactivated"


async def test_concurrent_misses_share_one_query() -> None:
    store = CountingStore({"a": "1"})
    store.delay = 0.05
    cache = TtlCache(store.get, ttl=1.0)
    results = await asyncio.gather(*(cache.get("a") for _ in range(200)))
    assert set(results) == {"1"}
    assert store.queries == 1


async def test_a_change_during_a_slow_query_is_not_overwritten_by_stale_data() -> None:
    store = CountingStore({"a": "active"})
    store.delay = 0.05
    cache = TtlCache(store.get, ttl=60.0)
    slow = asyncio.create_task(cache.get("a"))
    await asyncio.sleep(0.01)
    cache.invalidate("a")  # e.g. deactivated while the query was in flight
    await slow
    store.values["a"] = "deactivated"
    assert await cache.get("a") == "deactivated"


async def test_store_errors_propagate_and_are_not_cached() -> None:
    calls = 0

    async def failing(_key: str) -> str | None:
        nonlocal calls
        calls += 1
        raise ConnectionError("store down")

    cache: TtlCache[str] = TtlCache(failing, ttl=60.0)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await cache.get("a")
    assert calls == 2


async def test_size_is_bounded() -> None:
    store = CountingStore({})
    cache = TtlCache(store.get, ttl=60.0, max_entries=10)
    for index in range(100):
        await cache.get(str(index))
    assert len(cache) == 10


async def test_verified_tokens_are_re_checked_against_their_credential() -> None:
    from datetime import UTC, datetime, timedelta

    from watchword.domain import CredentialKind, PresentedCredential, Principal, Transport
    from watchword.identify.verified_tokens import VerifiedTokens
    from watchword.store.models import Credential

    now = datetime.now(UTC)
    record = Credential(id="c" * 16, kind=10, name="s", secret_hash="h", secret_hint="x")
    records = {record.id: record}

    async def lookup(credential_id: str) -> Credential | None:
        return records.get(credential_id)

    clock = Clock()
    tokens = VerifiedTokens(lookup, max_age=60, clock=clock)
    presented = PresentedCredential("a.b.c", Transport.BEARER)
    principal = Principal(
        id="s", kind=CredentialKind.TENANT_JWT, transport=Transport.BEARER, credential_id=record.id,
        expires_at=now + timedelta(minutes=5),
    )  # fmt: skip
    await tokens.remember(presented, principal)
    assert await tokens.get(presented, now) == principal
    # Another transport or client id is another entry (C7 depends on the connector id beside the token).
    assert await tokens.get(PresentedCredential("a.b.c", Transport.HEADER_PAIR, "x"), now) is None
    record.deactivated_at = now
    assert await tokens.get(presented, now) is None, "a deactivated signing secret is seen at once"
    record.deactivated_at = None
    await tokens.remember(presented, principal)
    record.secret_hash = "rotated"
    assert await tokens.get(presented, now) is None, "a rotation makes the token be verified again"
    record.deactivated_at = None
    await tokens.remember(presented, principal)
    assert await tokens.get(presented, now + timedelta(minutes=6)) is None, "expired tokens are never served"
    await tokens.remember(presented, principal)
    clock.now = 61
    assert await tokens.get(presented, now) is None, "entries are re-verified after max_age"
