"""The change feed and the invalidation bus, in process (issue #8): event payloads, what each change drops,
what the store announces and when (after commit, never for a failed write; with pg_notify on PostgreSQL,
delivered on commit only), and the signing key ring's single-flight reload for an unknown kid (I5)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from watchword.caches import CacheRegistry
from watchword.domain import CredentialKind, PresentedCredential, Principal, Transport
from watchword.identify.cache import TtlCache
from watchword.identify.verified_tokens import VerifiedTokens
from watchword.identify.watchword_token import SigningKeyRing
from watchword.invalidation import InvalidationBus, PostgresInvalidationBus
from watchword.store import database, models
from watchword.store.change_feed import CHANNEL, BadPayload, Change, ChangeKind, parse
from watchword.store.change_listener import ChangeListener, conninfo
from watchword.store.repository import NotFoundError, Store

from support.sqlite import migrated_sqlite_url

# ---- payloads ----


def test_a_change_round_trips_through_its_payload() -> None:
    change = Change(ChangeKind.CREDENTIAL, ("abc", "def"), at=1_700_000_000.25, origin="r1")
    assert parse(change.encode()) == change
    assert json.loads(change.encode())["v"] == 1


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        "[1, 2]",
        '"credential"',
        '{"kind": "credential", "ids": [], "at": 1}',  # no version
        '{"v": 2, "kind": "credential", "ids": [], "at": 1}',
        '{"v": 1, "kind": "everything", "ids": [], "at": 1}',
        '{"v": 1, "kind": "credential", "ids": "abc", "at": 1}',
        '{"v": 1, "kind": "credential", "ids": [1], "at": 1}',
        '{"v": 1, "kind": "credential", "ids": [""], "at": 1}',
        '{"v": 1, "kind": "credential", "ids": ["' + "x" * 300 + '"], "at": 1}',
        '{"v": 1, "kind": "credential", "ids": ' + json.dumps(["a"] * 17) + ', "at": 1}',
        '{"v": 1, "kind": "credential", "ids": []}',
        '{"v": 1, "kind": "credential", "ids": [], "at": "now"}',
        '{"v": 1, "kind": "credential", "ids": [], "at": true}',
        '{"v": 1, "kind": "credential", "ids": [], "at": -1}',
        '{"v": 1, "kind": "credential", "ids": [], "at": NaN}',
        '{"v": 1, "kind": "credential", "ids": [], "at": Infinity}',
        '{"v": 1, "kind": "credential", "ids": [], "at": 1, "origin": 7}',
        '{"v": 1, "kind": "credential", "ids": [], "at": 1, "origin": "' + "o" * 65 + '"}',
        "[" * 100_000,
        '{"v": 1, "kind": "credential", "ids": [], "at": 1, "pad": "' + "p" * 8000 + '"}',
        "\ud800",
    ],
)
def test_a_bad_payload_is_refused_with_bad_payload(payload: str) -> None:
    with pytest.raises(BadPayload):
        parse(payload)


async def test_the_listener_logs_and_skips_bad_payloads_and_failing_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[Change] = []

    async def on_change(change: Change) -> None:
        if change.ids == ("boom",):
            raise RuntimeError("handler failed")
        received.append(change)

    async def on_connected() -> None:
        return None

    listener = ChangeListener("postgresql://nobody@127.0.0.1:1/none", on_change, on_connected)
    caplog.set_level(logging.WARNING, "watchword.change_feed")
    await listener.receive("garbage")
    await listener.receive('{"v": 1, "kind": "nope", "ids": [], "at": 1}')
    await listener.receive(Change(ChangeKind.CREDENTIAL, ("boom",), at=1.0).encode())
    good = Change(ChangeKind.TOKEN_REVOKED, ("jti-1",), at=2.0, origin="x")
    await listener.receive(good.encode())
    assert received == [good]
    messages = [record.getMessage() for record in caplog.records]
    assert sum("ignoring a change notification" in m for m in messages) == 2
    assert any("applying change credential" in m for m in messages)


def test_the_listener_connects_with_libpq_urls_whatever_driver_the_setting_names() -> None:
    assert (
        conninfo("postgresql+psycopg://ww:p%40ss@db:5433/watchword")
        == "postgresql://ww:p%40ss@db:5433/watchword"
    )
    assert conninfo("postgresql://ww@db/watchword") == "postgresql://ww@db/watchword"


# ---- what each change drops ----


async def _loaded(value: str) -> str:
    return value


class World:
    def __init__(self) -> None:
        self.credentials: TtlCache[str] = TtlCache(_loaded, ttl=60)
        self.applications: TtlCache[str] = TtlCache(_loaded, ttl=60)
        self.memberships: TtlCache[str] = TtlCache(_loaded, ttl=60)
        self.revocations: TtlCache[str] = TtlCache(_loaded, ttl=60)
        self.outbound: TtlCache[str] = TtlCache(_loaded, ttl=60)
        self.tokens = VerifiedTokens(self._no_credential)
        self.reloads = 0
        caches = CacheRegistry()
        caches.add("credentials", self.credentials, {ChangeKind.CREDENTIAL})
        caches.add("applications", self.applications, {ChangeKind.APPLICATION_CREATED})
        caches.add("memberships", self.memberships, {ChangeKind.MEMBERSHIP})
        caches.add("revocations", self.revocations, {ChangeKind.TOKEN_REVOKED})
        caches.add("outbound_credentials", self.outbound, {ChangeKind.OUTBOUND_CREDENTIAL})
        caches.add("verified_tokens", self.tokens, {ChangeKind.CREDENTIAL})
        caches.add_key_ring("signing_keys", self._reload)
        self.bus = InvalidationBus(caches)

    @staticmethod
    async def _no_credential(_: str) -> models.Credential | None:
        return None

    async def _reload(self) -> None:
        self.reloads += 1

    async def warm(self) -> None:
        for cache in (self.credentials, self.applications, self.memberships, self.revocations, self.outbound):
            for key in ("a", "b"):
                await cache.get(key)
        for credential_id in ("a", "b"):
            presented = PresentedCredential(token=f"jwt-{credential_id}", transport=Transport.BEARER)
            principal = Principal(
                id="p",
                kind=CredentialKind.WATCHWORD_TOKEN,
                transport=Transport.BEARER,
                credential_id=credential_id,
            )
            await self.tokens.remember(presented, principal)

    def sizes(self) -> tuple[int, ...]:
        caches = (self.credentials, self.applications, self.memberships, self.revocations, self.outbound)
        return (*(len(cache) for cache in caches), len(self.tokens))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (ChangeKind.CREDENTIAL, (1, 2, 2, 2, 2, 1)),  # the credential and the JWTs resting on it
        (ChangeKind.MEMBERSHIP, (2, 2, 1, 2, 2, 2)),
        (ChangeKind.TOKEN_REVOKED, (2, 2, 2, 1, 2, 2)),
        (ChangeKind.OUTBOUND_CREDENTIAL, (2, 2, 2, 2, 1, 2)),
        (ChangeKind.APPLICATION_CREATED, (2, 1, 2, 2, 2, 2)),
        (ChangeKind.APPLICATION_DELETED, (0, 0, 0, 0, 0, 0)),  # the deletion cascades to its credentials
        (ChangeKind.ORGANIZATION, (0, 0, 0, 0, 0, 0)),
        (ChangeKind.SIGNING_KEY, (2, 2, 2, 2, 2, 2)),
    ],
)
async def test_i6_each_change_drops_exactly_what_it_can_make_wrong(kind: ChangeKind, expected: tuple) -> None:
    world = World()
    await world.warm()
    assert world.sizes() == (2, 2, 2, 2, 2, 2)
    await world.bus.apply(Change(kind, ("a",) if kind is not ChangeKind.SIGNING_KEY else ()))
    assert world.sizes() == expected
    assert world.reloads == (1 if kind is ChangeKind.SIGNING_KEY else 0)


async def test_a_flush_forgets_everything_and_reloads_the_key_rings() -> None:
    world = World()
    await world.warm()
    await world.bus.flush()
    assert world.sizes() == (0, 0, 0, 0, 0, 0)
    assert (world.reloads, world.bus.flushes) == (1, 1)


async def test_a_failing_key_ring_reload_is_logged_and_the_rest_still_happens(caplog) -> None:
    cache: TtlCache[str] = TtlCache(_loaded, ttl=60)
    await cache.get("a")

    async def broken() -> None:
        raise OSError("store down")

    caches = CacheRegistry()
    caches.add("credentials", cache, {ChangeKind.CREDENTIAL})
    caches.add_key_ring("signing_keys", broken)
    bus = InvalidationBus(caches)
    await bus.flush()
    assert len(cache) == 0
    assert "reloading signing keys" in caplog.text


async def test_the_postgresql_bus_reports_every_delay_and_skips_its_own_changes() -> None:
    world = World()
    await world.warm()
    bus = PostgresInvalidationBus(world.bus.caches, database_url="postgresql://x@127.0.0.1/none", origin="me")
    seen: list[tuple[ChangeKind, float]] = []
    bus.delay_observers.append(lambda change, delay: seen.append((change.kind, delay)))
    bus.delay_observers.insert(0, lambda change, delay: 1 / 0)  # a broken observer changes nothing
    await bus.receive(Change(ChangeKind.CREDENTIAL, ("a",), at=time.time() - 0.25, origin="me"))
    assert len(world.credentials) == 2  # applied already, after its own commit
    await bus.receive(Change(ChangeKind.CREDENTIAL, ("a",), at=time.time() - 0.25, origin="other"))
    assert len(world.credentials) == 1
    assert [kind for kind, _ in seen] == [ChangeKind.CREDENTIAL, ChangeKind.CREDENTIAL]
    assert all(0.25 <= delay < 5 for _, delay in seen)


# ---- what the store announces ----


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = migrated_sqlite_url(tmp_path, "feed.db")
    store = Store.connect(url)
    yield store
    await store.close()


def _credential(organization_id: str) -> models.Credential:
    return models.Credential(
        id=uuid.uuid4().hex[:16],
        kind=int(CredentialKind.API_KEY),
        organization_id=organization_id,
        name="k",
        secret_hash="h",
        secret_hint="wwak_",
    )


async def test_s6_every_admin_write_announces_its_change_after_commit(store: Store) -> None:
    announced: list[Change] = []

    async def observe(change: Change) -> None:
        announced.append(change)

    store.change_observers.append(observe)
    organization = await store.create_organization("o")
    application = await store.create_application(organization.id, "a")
    credential = await store.add_credential(_credential(organization.id))
    await store.deactivate_credential(credential.id)
    await store.rotate_credential(credential.id, "h2", None, None)
    await store.set_membership(organization.id, "https://idp.example", "user-1", ["editor"])
    await store.delete_membership(organization.id, "https://idp.example", "user-1")
    await store.revoke_token("jti-1", datetime.now(UTC) + timedelta(hours=1))
    await store.delete_credential(credential.id)
    await store.delete_application(application.id)
    await store.delete_organization(organization.id)
    assert [(c.kind, c.ids) for c in announced] == [
        (ChangeKind.APPLICATION_CREATED, (application.id,)),
        (ChangeKind.CREDENTIAL, (credential.id,)),
        (ChangeKind.CREDENTIAL, (credential.id,)),
        (ChangeKind.CREDENTIAL, (credential.id,)),
        (ChangeKind.MEMBERSHIP, ("user-1",)),
        (ChangeKind.MEMBERSHIP, ("user-1",)),
        (ChangeKind.TOKEN_REVOKED, ("jti-1",)),
        (ChangeKind.CREDENTIAL, (credential.id,)),
        (ChangeKind.APPLICATION_DELETED, (application.id,)),
        (ChangeKind.ORGANIZATION, (organization.id,)),
    ]
    assert all(c.origin == store.origin and abs(c.at - time.time()) < 60 for c in announced)


async def test_s7_a_membership_change_of_one_issuers_user_refreshes_that_subjects_cached_roles(
    store: Store,
) -> None:
    """Memberships are cached by subject (what the change feed names) and keyed inside by issuer: a write
    for either issuer's user drops the entry, so neither issuer's roles are served stale."""
    memberships = TtlCache(store.user_memberships, ttl=60)
    caches = CacheRegistry()
    caches.add("memberships", memberships, {ChangeKind.MEMBERSHIP})
    InvalidationBus(caches).attach(store)
    organization = await store.create_organization("o")
    first, second = "https://a.example", "https://b.example"
    await store.set_membership(organization.id, first, "user-1", ["admin"])
    assert set(await memberships.get("user-1") or {}) == {first}
    await store.set_membership(organization.id, second, "user-1", ["viewer"])
    cached = await memberships.get("user-1") or {}
    assert {issuer: [row.roles for row in rows] for issuer, rows in cached.items()} == {
        first: [["admin"]],
        second: [["viewer"]],
    }
    await store.delete_membership(organization.id, first, "user-1")
    assert set(await memberships.get("user-1") or {}) == {second}


async def test_a_failed_write_announces_nothing_and_a_failing_observer_fails_no_write(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    announced: list[Change] = []

    async def broken(change: Change) -> None:
        raise RuntimeError("observer failed")

    async def observe(change: Change) -> None:
        announced.append(change)

    store.change_observers.extend([broken, observe])
    with pytest.raises(NotFoundError):
        await store.deactivate_credential("missing")
    assert announced == []
    organization = await store.create_organization("o")
    credential = await store.add_credential(_credential(organization.id))  # committed despite `broken`
    assert await store.get_credential(credential.id) is not None
    assert [c.kind for c in announced] == [ChangeKind.CREDENTIAL]
    assert "observer failed" in caplog.text


async def test_the_changes_are_notified_on_postgresql_on_commit_only(postgres) -> None:
    name = f"feed_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    await database.migrate_async(url)
    store = Store.connect(url)
    listener = await psycopg.AsyncConnection.connect(postgres.dsn(name), autocommit=True)
    try:
        await listener.execute(f"LISTEN {CHANNEL}")
        organization = await store.create_organization("o")
        with pytest.raises(NotFoundError):
            await store.deactivate_credential("missing")  # rolled back: no notification
        credential = await store.add_credential(_credential(organization.id))
        await store.deactivate_credential(credential.id)
        received = [parse(n.payload) async for n in listener.notifies(timeout=2.0, stop_after=2)]
        assert [(c.kind, c.ids) for c in received] == [
            (ChangeKind.CREDENTIAL, (credential.id,)),
            (ChangeKind.CREDENTIAL, (credential.id,)),
        ]
        assert {c.origin for c in received} == {store.origin}
        assert [n async for n in listener.notifies(timeout=0.3)] == []
    finally:
        await listener.close()
        await store.close()


# ---- the signing key ring (I5) ----


async def test_i5_an_unknown_kid_reloads_the_ring_once_for_all_concurrent_callers() -> None:
    calls = 0
    now = [100.0]

    async def list_keys() -> list[models.SigningKey]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return []

    ring = SigningKeyRing(list_keys, clock=lambda: now[0])
    results = await asyncio.gather(*(ring.key("new-kid") for _ in range(20)))
    assert results == [None] * 20
    assert calls == 1
    # Rate-limited: more unknown kids within the interval cost nothing more...
    await ring.key("another")
    assert calls == 1
    # ...and after it, one reload again.
    now[0] += 1.5
    await ring.key("another")
    assert calls == 2
    # An announced rotation always reloads.
    await ring.reload()
    assert calls == 3


async def test_i5_a_reload_that_began_earlier_never_overwrites_a_later_one() -> None:
    from watchword.crypto.master_key import MasterKey, generate
    from watchword.issue import signing_keys

    key = signing_keys.generate("ES256", MasterKey.from_text(generate(), "test"))
    row = models.SigningKey(
        kid=key.kid, algorithm="ES256", public_jwk=key.public_jwk, encrypted_private_key=b""
    )
    release = asyncio.Event()
    answers = iter([[], [row]])

    async def list_keys() -> list[models.SigningKey]:
        answer = next(answers)
        if not answer:
            await release.wait()  # the older query, still reading the store from before the rotation
        return answer

    ring = SigningKeyRing(list_keys)
    older = asyncio.create_task(ring.reload())
    await asyncio.sleep(0)
    await ring.reload()  # the rotation's event: sees the new key
    release.set()
    await older
    assert await ring.key(key.kid) is not None
