"""The SQLite change log (issue #13): several processes on one SQLite file drop each other's cached
entries. Each "process" here is a Store with its own pool, origin and bus on the same file, as each
worker process has; tests/system/test_change_log_processes.py runs real `watchword serve` processes."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchword.caches import CacheRegistry
from watchword.identify.cache import TtlCache
from watchword.invalidation import SqliteInvalidationBus
from watchword.store import base, database, models
from watchword.store.change_feed import BadPayload, Change, ChangeKind, parse
from watchword.store.change_log import ChangeLogFollower, SqliteChangeLog
from watchword.store.repository import NotFoundError, Store

from support.sqlite import migrated_sqlite_url

LIMIT_SECONDS = 1.0
LATER = datetime.now(UTC) + timedelta(hours=1)


@dataclass
class Process:
    store: Store
    bus: SqliteInvalidationBus
    revocations: TtlCache[bool]
    delays: list[float]
    reloads: list[float]


def _process(url: str) -> Process:
    store = Store.connect(url)
    revocations: TtlCache[bool] = TtlCache(store.is_revoked, ttl=60)
    reloads: list[float] = []

    async def reload() -> None:
        reloads.append(time.monotonic())

    caches = CacheRegistry()
    caches.add("revocations", revocations, {ChangeKind.TOKEN_REVOKED})
    caches.add_key_ring("signing_keys", reload)
    bus = SqliteInvalidationBus(caches)
    bus.attach(store)
    delays: list[float] = []
    bus.delay_observers.append(lambda _change, delay: delays.append(delay))
    return Process(store, bus, revocations, delays, reloads)


@pytest.fixture
async def path(tmp_path: Path) -> Path:
    path = tmp_path / "shared.db"
    migrated_sqlite_url(tmp_path, path.name)
    return path


@pytest.fixture
async def pair(path: Path) -> AsyncIterator[tuple[Process, Process]]:
    first, second = _process(f"sqlite:///{path}"), _process(f"sqlite:///{path}")
    for process in (first, second):
        await process.bus.start()
    yield first, second
    for process in (first, second):
        await process.bus.stop()
        await process.store.close()


def _entries(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT id, payload FROM change_log ORDER BY id").fetchall()


async def _within_limit(condition: object, what: str) -> float:
    started = time.monotonic()
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() - started < LIMIT_SECONDS, f"{what}: not within {LIMIT_SECONDS}s"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def test_i6_a_token_revoked_through_one_process_is_refused_by_the_other_within_1s(pair) -> None:
    first, second = pair
    assert await second.revocations.get("jti-1") is None  # cached as not revoked
    await first.store.revoke_token("jti-1", LATER)
    delay = await _within_limit(lambda: second.revocations.get("jti-1"), "revocation")
    print(f"\nrevocation reached the other process after {delay * 1000:.0f} ms")
    assert len(second.delays) == 1
    assert 0 <= second.delays[0] < LIMIT_SECONDS
    # The writer's follower reads its own entry too, as a PostgreSQL replica gets its own notification:
    # it reports the delay and skips the change, applied at commit already.
    await _within_limit(lambda: _true(first.delays), "the writer's own entry")
    assert (first.bus.applied, second.bus.applied) == (1, 1)


async def test_i5_a_signing_key_change_through_one_process_reloads_the_others_key_rings(pair) -> None:
    first, second = pair
    key = models.SigningKey(kid="k2", algorithm="ES256", public_jwk="{}", encrypted_private_key=b"sealed")
    await first.store.rotate_signing_key(key, datetime.now(UTC) + timedelta(minutes=5))
    changed = time.monotonic()
    await _within_limit(lambda: _true(second.reloads), "key ring reload")
    assert second.reloads[0] - changed < LIMIT_SECONDS
    assert len(first.reloads) == 1  # at commit, not again from the log


async def _true(items: list[float]) -> bool:
    return bool(items)


async def test_each_entry_carries_its_change_and_a_rolled_back_write_leaves_none(pair, path: Path) -> None:
    first, _ = pair
    organization = await first.store.create_organization("o")
    with pytest.raises(NotFoundError):
        await first.store.deactivate_credential("missing")  # its change was appended, then rolled back
    with pytest.raises(NotFoundError):
        await first.store.delete_organization("missing")
    await first.store.revoke_token("jti-2", LATER)
    await first.store.delete_organization(organization.id)
    changes = [parse(payload) for _, payload in _entries(path)]
    assert [(c.kind, c.ids) for c in changes] == [
        (ChangeKind.TOKEN_REVOKED, ("jti-2",)),
        (ChangeKind.ORGANIZATION, (organization.id,)),
    ]
    assert all(c.origin == first.store.origin and abs(c.at - time.time()) < 60 for c in changes)


async def test_a_follower_starts_at_the_newest_entry(path: Path) -> None:
    writer = Store.connect(f"sqlite:///{path}")
    try:
        for number in range(3):
            await writer.revoke_token(f"before-{number}", LATER)
        received: list[Change] = []
        follower = ChangeLogFollower(SqliteChangeLog(path), _append_to(received), _never)
        await follower.poll()
        await follower.poll()
        assert (follower.position, received) == (3, [])
        await writer.revoke_token("after", LATER)
        await follower.poll()
        assert [c.ids for c in received] == [("after",)]
    finally:
        await writer.close()


def _append_to(received: list[Change]) -> Callable[[Change], Awaitable[None]]:
    async def on_change(change: Change) -> None:
        received.append(change)

    return on_change


async def _never() -> None:
    raise AssertionError("no flush expected")


async def test_writers_of_every_process_keep_the_log_bounded(
    pair, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "KEEP_ENTRIES", 5)
    first, second = pair
    for number in range(12):
        await (first if number % 2 else second).store.revoke_token(f"jti-{number}", LATER)
    assert [entry_id for entry_id, _ in _entries(path)] == [8, 9, 10, 11, 12]


async def test_a_follower_behind_pruned_entries_flushes_and_follows_on(
    path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(base, "KEEP_ENTRIES", 5)
    writer = Store.connect(f"sqlite:///{path}")
    received: list[Change] = []
    flushes: list[int] = []

    async def flush() -> None:
        flushes.append(1)

    follower = ChangeLogFollower(SqliteChangeLog(path), _append_to(received), flush)
    try:
        await follower.poll()  # starts at 0
        for number in range(12):  # entries 1-7 are pruned before the follower reads again
            await writer.revoke_token(f"jti-{number}", LATER)
        await follower.poll()
        assert (len(flushes), follower.gaps, follower.position) == (1, 1, 12)
        assert [c.ids for c in received] == [(f"jti-{n}",) for n in range(7, 12)]
        assert "entries 1 to 7 were pruned" in caplog.text
        await writer.revoke_token("next", LATER)
        await follower.poll()
        assert (len(flushes), received[-1].ids) == (1, ("next",))
    finally:
        follower._log.close()
        await writer.close()


async def test_concurrent_writers_on_one_file_get_consecutive_ids_in_commit_order(pair, path: Path) -> None:
    first, second = pair
    await asyncio.gather(
        *(
            process.store.revoke_token(f"{index}-{n}", LATER)
            for n in range(15)
            for index, process in enumerate(pair)
        )
    )
    entries = _entries(path)
    assert [entry_id for entry_id, _ in entries] == list(range(1, 31))
    received: list[Change] = []
    follower = ChangeLogFollower(SqliteChangeLog(path), _append_to(received), _never)
    follower.position = 0
    await follower.poll()
    assert len(received) == 30
    assert follower.gaps == 0
    assert {c.origin for c in received} == {first.store.origin, second.store.origin}


async def test_a_locked_or_broken_log_is_logged_once_and_followed_again(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The follower never stops: a file locked by another process at start, then a table that vanished
    for a while. Each outage logs one line; the follower then reads what was written meanwhile."""
    caplog.set_level(logging.WARNING, "watchword.change_feed")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    process = _process(f"sqlite:///{path}")
    assert process.bus.follower is not None
    process.bus.follower._poll_seconds = 0.02
    process.bus.follower.start()
    try:
        await asyncio.sleep(0.3)
        assert process.bus.follower.failing
        assert process.bus.follower.position is None
        locker.execute("COMMIT")
        locker.close()
        await asyncio.wait_for(process.bus.follower.started.wait(), 2)
        assert process.bus.flushes == 1  # it may have cached from the store while the log was unreadable
        assert await process.revocations.get("while-away") is None  # cached: only the log can drop it
        with sqlite3.connect(path) as connection:
            connection.execute("ALTER TABLE change_log RENAME TO change_log_away")
        await asyncio.sleep(0.3)
        with sqlite3.connect(path) as connection:
            connection.execute("INSERT INTO change_log_away (payload) VALUES (?)", (_revoked("while-away"),))
            connection.execute("ALTER TABLE change_log_away RENAME TO change_log")
        await _within_limit(lambda: _dropped(process.revocations), "entry written during the outage")
        assert not process.bus.follower.failing
        warnings = [r.getMessage() for r in caplog.records if "cannot read the change log" in r.getMessage()]
        assert len(warnings) == 2, warnings
        assert caplog.text.count("readable again") == 2
    finally:
        await process.bus.stop()
        await process.store.close()


async def _dropped(cache: TtlCache[bool]) -> bool:
    return len(cache) == 0


def _revoked(jti: str) -> str:
    return Change(ChangeKind.TOKEN_REVOKED, (jti,), at=time.time(), origin="elsewhere").encode()


async def test_the_store_s_sqlite_connections_wait_for_other_processes_in_wal_mode(path: Path) -> None:
    store = Store.connect(f"sqlite:///{path}")
    try:
        async with store.engine.connect() as connection:
            assert (await connection.execute(sa.text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await connection.execute(sa.text("PRAGMA busy_timeout"))).scalar() == 5000
    finally:
        await store.close()


# ---- malformed entries ----

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_CHANGE_LIKE = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 2, "1", None]), "kind": st.sampled_from([*ChangeKind, "x", 3]), "ids": _JSON},
    optional={"at": _JSON, "origin": _JSON},
)
_MALFORMED = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),  # SQLite stores NaN as NULL, which the column refuses
    _JSON.map(json.dumps),
    _CHANGE_LIKE.map(json.dumps),
)


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    database.migrate(f"sqlite:///{path}")
    return path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.booleans(), _MALFORMED), min_size=1, max_size=8))
def test_malformed_entries_are_skipped_and_the_follower_goes_on(
    fuzz_path: Path, rows: list[tuple[bool, object]]
) -> None:
    """Whatever a row holds (SQLite stores any type in any column), the follower hands on the well-formed
    entries, in order, skips the rest, and reaches the end of the log."""
    expected: list[Change] = []
    with sqlite3.connect(fuzz_path) as connection:
        start = connection.execute("SELECT COALESCE(MAX(id), 0) FROM change_log").fetchone()[0]
        for number, (valid, junk) in enumerate(rows):
            if valid:
                junk = Change(ChangeKind.CREDENTIAL, (f"c{number}",), at=1.0, origin="elsewhere").encode()
            expected.extend(_as_change(junk))  # generated junk can be a well-formed event by chance
            connection.execute("INSERT INTO change_log (payload) VALUES (?)", (junk,))
    received: list[Change] = []
    follower = ChangeLogFollower(SqliteChangeLog(fuzz_path), _append_to(received), _never)
    follower.position = start
    try:
        asyncio.run(follower.poll())
    finally:
        follower._log.close()
    assert received == expected
    assert follower.position == start + len(rows)


def _as_change(payload: object) -> list[Change]:
    if not isinstance(payload, str):
        return []
    try:
        return [parse(payload)]
    except BadPayload:
        return []


async def test_a_reader_of_a_missing_file_fails_without_creating_it(tmp_path: Path) -> None:
    reader = SqliteChangeLog(tmp_path / "not yet?#.db")
    with pytest.raises(sqlite3.OperationalError):
        await reader.position()
    assert list(tmp_path.iterdir()) == []
