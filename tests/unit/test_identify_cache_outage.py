"""The credential cache during a store outage (#8): what may be served stale, and what never is."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from watchword.identify.cache import TtlCache


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Store:
    """Answers from `rows` while up; raises what a dead PostgreSQL connection raises while down."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {"known": "record"}
        self.failure: BaseException | None = None
        self.gate: asyncio.Event | None = None  # when set: loads wait for it (a slow query)
        self.queries = 0

    async def load(self, key: str) -> str | None:
        self.queries += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return self.rows.get(key)


OUTAGE = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def _cache(grace: float) -> tuple[TtlCache[str], _Store, _Clock]:
    store, clock = _Store(), _Clock()
    cache: TtlCache[str] = TtlCache(store.load, ttl=1.0, clock=clock)
    cache.serve_stale_during_outage(grace)
    return cache, store, clock


def test_a_known_value_is_served_stale_within_the_grace_only() -> None:
    async def scenario() -> None:
        cache, store, clock = _cache(grace=30.0)
        assert await cache.get("known") == "record"
        store.failure = OUTAGE
        clock.now += 5  # past the freshness: a reload is tried, fails, the stale value answers
        assert await cache.get("known") == "record"
        assert cache.stale_served == 1
        clock.now += 24.9  # 29.9 s after the load
        assert await cache.get("known") == "record"
        clock.now += 0.2  # 30.1 s: past the grace, the outage is reported
        with pytest.raises(OperationalError):
            await cache.get("known")
        store.failure = None  # the store is back: fresh answers again
        store.rows["known"] = "changed"
        assert await cache.get("known") == "changed"

    asyncio.run(scenario())


def test_an_absence_is_never_served_stale() -> None:
    """A stale "not found" (or "not revoked") could become an allow: the outage is reported instead."""

    async def scenario() -> None:
        cache, store, clock = _cache(grace=30.0)
        assert await cache.get("missing") is None
        store.failure = OUTAGE
        clock.now += 2
        with pytest.raises(OperationalError):
            await cache.get("missing")
        with pytest.raises(OperationalError):
            await cache.get("never-seen")

    asyncio.run(scenario())


def test_an_invalidated_entry_is_never_served_stale() -> None:
    """Deactivation or revocation seen by this replica drops the entry, outage or not."""

    async def scenario() -> None:
        cache, store, clock = _cache(grace=30.0)
        assert await cache.get("known") == "record"
        cache.invalidate("known")
        store.failure = OUTAGE
        with pytest.raises(OperationalError):
            await cache.get("known")
        store.failure = None
        assert await cache.get("known") == "record"
        cache.clear()
        store.failure = OUTAGE
        clock.now += 2
        with pytest.raises(OperationalError):
            await cache.get("known")

    asyncio.run(scenario())


def test_only_outages_are_answered_stale_and_a_zero_grace_disables_it() -> None:
    async def scenario() -> None:
        cache, store, clock = _cache(grace=30.0)
        assert await cache.get("known") == "record"
        clock.now += 2
        for fault in (IntegrityError("INSERT", {}, ValueError("dup")), RuntimeError("a bug")):
            store.failure = fault
            with pytest.raises(type(fault)):
                await cache.get("known")
        disabled, store, clock = _cache(grace=0.0)
        assert await disabled.get("known") == "record"
        store.failure = OUTAGE
        clock.now += 2
        with pytest.raises(OperationalError):
            await disabled.get("known")

    asyncio.run(scenario())


def test_callers_waiting_on_the_failed_reload_get_the_stale_value_too() -> None:
    async def scenario() -> None:
        cache, store, clock = _cache(grace=30.0)
        assert await cache.get("known") == "record"
        clock.now += 2
        store.failure, store.gate = OUTAGE, asyncio.Event()
        waiting = [asyncio.create_task(cache.get("known")) for _ in range(5)]
        await asyncio.sleep(0)
        store.gate.set()
        assert await asyncio.gather(*waiting) == ["record"] * 5
        assert store.queries == 2  # the first load, then one shared reload for the five callers

    asyncio.run(scenario())


def test_s8_a_hung_store_call_gives_up_in_time_and_later_calls_fail_at_once_until_the_probe_answers() -> None:
    from watchword.store.database import StoreTimeoutError, TimeBound, is_store_outage

    async def scenario() -> None:
        store_answers = asyncio.Event()
        probes = 0

        async def probe() -> None:
            nonlocal probes
            probes += 1
            await store_answers.wait()

        async def query() -> str:
            await store_answers.wait()
            return "row"

        bound = TimeBound(0.05, probe)
        started = asyncio.get_running_loop().time()
        with pytest.raises(StoreTimeoutError) as hung:
            await bound.run(query())
        assert is_store_outage(hung.value)  # so the outage grace applies, and the guard says UNAVAILABLE
        assert asyncio.get_running_loop().time() - started < 0.5
        with pytest.raises(StoreTimeoutError):
            await bound.run(query())  # at once: nothing waits on a hung store
        assert bound.timeouts == 1
        await asyncio.sleep(0.2)
        assert probes >= 2  # the probe keeps asking
        store_answers.set()
        await asyncio.sleep(0.2)
        assert bound.hung_since is None
        assert await bound.run(query()) == "row"
        await bound.close()

    asyncio.run(scenario())
