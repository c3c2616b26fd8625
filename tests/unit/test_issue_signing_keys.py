"""I5 signing keys: the issuing keyring, rotation with overlap, JWKS, the admin RPCs, on SQLite and
PostgreSQL, and through a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from watchword.api.admin import AdminServicer
from watchword.api.guard import GuardInterceptor
from watchword.caches import CacheRegistry
from watchword.config import ConfigError
from watchword.config import load as load_settings
from watchword.crypto import master_key as master_key_module
from watchword.crypto.master_key import MasterKey, MasterKeyError
from watchword.decide.catalogue import Catalogue
from watchword.identify.watchword_token import SigningKeyRing
from watchword.invalidation import InvalidationBus
from watchword.issue import signing_keys
from watchword.issue.keyring import IssuingKeyring, SigningKeyError, public_jwk
from watchword.jose import jws
from watchword.store import database, models
from watchword.store.repository import Store
from watchword.v1 import admin_pb2, admin_pb2_grpc

from support.server import WatchwordProcess
from support.sqlite import migrated_sqlite_url

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Clock:
    """A wall clock and a monotonic clock that only move when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.from_text(master_key_module.generate(), "test")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return migrated_sqlite_url(tmp_path)


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    store = Store.connect(sqlite_url)
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def keyring_for(store: Store, master_key: MasterKey, clock: Clock, **options: Any) -> IssuingKeyring:
    return IssuingKeyring(store, master_key, clock=clock.wall, monotonic=clock.monotonic, **options)


async def keys_by_kid(store: Store) -> dict[str, models.SigningKey]:
    return {row.kid: row for row in await store.list_signing_keys()}


def sign(keyring: IssuingKeyring, claims: dict[str, object]) -> str:
    key = keyring.active()
    return jwt.encode(
        claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "at+jwt"}
    )


def invalid_field(exc: grpc.RpcError) -> str:
    """The `field` an INVALID_ARGUMENT names in its ErrorInfo."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    assert info.reason == "field_invalid"
    return info.metadata["field"]


def verify_with_jwks(token: str, jwks: dict) -> dict:
    """Plain PyJWT against the published set, as a sibling service would verify offline."""
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [entry for entry in jwks["keys"] if entry["kid"] == kid]
    key = jwt.PyJWK(jwk)
    return jwt.decode(token, key.key, algorithms=[jwk["alg"]], options={"verify_aud": False})


# ---- settings ----


def test_settings_defaults_and_bounds() -> None:
    settings = load_settings(environ={})
    assert settings.signing_algorithm == "ES256"
    assert (settings.token_lifetime_seconds, settings.max_token_lifetime_seconds) == (3600, 86400)
    env = {"WATCHWORD_SIGNING_ALGORITHM": "EdDSA", "WATCHWORD_TOKEN_LIFETIME_SECONDS": "600"}
    assert load_settings(environ=env).signing_algorithm == "EdDSA"
    for bad in (
        {"WATCHWORD_SIGNING_ALGORITHM": "HS256"},
        {"WATCHWORD_TOKEN_LIFETIME_SECONDS": "59"},
        {"WATCHWORD_MAX_TOKEN_LIFETIME_SECONDS": "604801"},
        {"WATCHWORD_TOKEN_LIFETIME_SECONDS": "7200", "WATCHWORD_MAX_TOKEN_LIFETIME_SECONDS": "3600"},
    ):
        with pytest.raises(ConfigError):
            load_settings(environ=bad)


def test_keyring_from_settings(store: Store, master_key: MasterKey) -> None:
    settings = load_settings(
        environ={"WATCHWORD_SIGNING_ALGORITHM": "RS256", "WATCHWORD_MAX_TOKEN_LIFETIME_SECONDS": "7200"}
    )
    keyring = IssuingKeyring.from_settings(store, master_key, settings)
    assert keyring.algorithm == "RS256"
    assert keyring.max_token_lifetime == timedelta(hours=2)


# ---- the active key ----


@pytest.mark.parametrize("algorithm", signing_keys.ALGORITHMS)
async def test_first_load_creates_a_key_of_the_configured_algorithm_and_it_signs(
    store: Store, master_key: MasterKey, clock: Clock, algorithm: str
) -> None:
    keyring = keyring_for(store, master_key, clock, algorithm=algorithm)
    active = await keyring.load()
    (row,) = await store.list_signing_keys()
    assert (row.kid, row.algorithm, row.active, row.retires_at) == (active.kid, algorithm, True, None)
    assert active.kid == signing_keys.thumbprint(json.loads(row.public_jwk))
    token = sign(keyring, {"sub": "user-1"})
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert verify_with_jwks(token, await keyring.jwks(T0))["sub"] == "user-1"
    # Watchword's own verifier (the ring the pipeline uses) accepts it too.
    ring = SigningKeyRing(store.list_signing_keys)
    parsed = jws.parse(token)
    jws.verify(parsed, await ring.key(parsed.kid))


async def test_load_reuses_the_existing_active_key(store: Store, master_key: MasterKey, clock: Clock) -> None:
    first = await keyring_for(store, master_key, clock).load()
    second = await keyring_for(store, master_key, clock, algorithm="RS256").load()
    assert second.kid == first.kid
    assert second.algorithm == "ES256"  # the setting only applies to new keys
    assert len(await store.list_signing_keys()) == 1


async def test_active_needs_no_store_query(store: Store, master_key: MasterKey, clock: Clock) -> None:
    keyring = keyring_for(store, master_key, clock)
    await keyring.load()
    statements: list[str] = []
    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for _ in range(1000):
        keyring.active()
    for _ in range(100):
        await keyring.current()  # within the refresh interval: no query either
    assert statements == []
    clock.advance(5)
    await asyncio.gather(*(keyring.current() for _ in range(20)))  # stale: one shared query
    assert len([s for s in statements if "signing_keys" in s]) == 1


async def test_active_before_load_is_a_programming_error(store: Store, master_key: MasterKey) -> None:
    with pytest.raises(RuntimeError, match="load"):
        IssuingKeyring(store, master_key).active()


async def test_a_wrong_master_key_stops_loading(store: Store, master_key: MasterKey, clock: Clock) -> None:
    await keyring_for(store, master_key, clock).load()
    other = MasterKey.from_text(master_key_module.generate(), "other")
    with pytest.raises(MasterKeyError, match="does not open with this master key"):
        await keyring_for(store, other, clock).load()


async def test_a_row_whose_key_does_not_match_its_kid_is_refused(
    store: Store, master_key: MasterKey, clock: Clock
) -> None:
    real = signing_keys.generate("ES256", master_key)
    other = signing_keys.generate("ES256", master_key)
    # Another key's public JWK under this kid: publishing it would make every token fail to verify.
    await store.ensure_active_signing_key(
        models.SigningKey(
            kid=real.kid,
            algorithm="ES256",
            public_jwk=other.public_jwk,
            encrypted_private_key=real.sealed_private_key,
        )
    )
    with pytest.raises(SigningKeyError, match="do not match"):
        await keyring_for(store, master_key, clock).load()


# ---- rotation ----


async def test_rotation_overlaps_until_the_longest_token_expires(
    store: Store, master_key: MasterKey, clock: Clock
) -> None:
    keyring = keyring_for(store, master_key, clock, max_token_lifetime_seconds=DAY.total_seconds())
    old = await keyring.load()
    old_token = sign(keyring, {"sub": "before", "exp": int((T0 + DAY).timestamp())})
    clock.advance(10)
    rotated_at = clock.now
    new_row = await keyring.rotate()
    rows = await keys_by_kid(store)
    assert new_row.kid != old.kid
    assert new_row.kid == keyring.active().kid
    assert rows[new_row.kid].active
    assert rows[new_row.kid].retires_at is None
    assert not rows[old.kid].active
    retires_at = rotated_at + DAY + keyring.staleness_margin
    assert rows[old.kid].retires_at == retires_at
    new_token = sign(keyring, {"sub": "after"})
    assert jwt.get_unverified_header(new_token)["kid"] == new_row.kid

    # Both keys are published until the old one retires; tokens it signed keep verifying.
    just_before = await keyring.jwks(retires_at - timedelta(seconds=1))
    assert [k["kid"] for k in just_before["keys"]] == [old.kid, new_row.kid]
    assert verify_with_jwks(old_token, just_before)["sub"] == "before"
    assert verify_with_jwks(new_token, just_before)["sub"] == "after"
    after = await keyring.jwks(retires_at)
    assert [k["kid"] for k in after["keys"]] == [new_row.kid]
    # The store agrees (what ListSigningKeys and a fresh replica read).
    assert [r.kid for r in await store.signing_keys_for_jwks(retires_at - timedelta(seconds=1))] == [
        old.kid,
        new_row.kid,
    ]
    assert [r.kid for r in await store.signing_keys_for_jwks(retires_at)] == [new_row.kid]


async def test_without_a_staleness_margin_the_old_key_retires_at_exactly_now_plus_max_lifetime(
    store: Store, master_key: MasterKey, clock: Clock
) -> None:
    keyring = keyring_for(
        store,
        master_key,
        clock,
        max_token_lifetime_seconds=3600,
        refresh_seconds=0,
        staleness_margin_seconds=0,
    )
    old = await keyring.load()
    await keyring.rotate()
    assert (await keys_by_kid(store))[old.kid].retires_at == T0 + timedelta(hours=1)


@pytest.mark.parametrize(("first", "second"), [("ES256", "EdDSA"), ("EdDSA", "RS256"), ("RS256", "ES256")])
async def test_rotation_to_another_algorithm(
    store: Store, master_key: MasterKey, clock: Clock, first: str, second: str
) -> None:
    keyring = keyring_for(store, master_key, clock, algorithm=first)
    await keyring.load()
    old_token = sign(keyring, {"sub": "a"})
    row = await keyring.rotate(second)
    assert (row.algorithm, keyring.active().algorithm) == (second, second)
    published = await keyring.jwks()
    assert {k["alg"] for k in published["keys"]} == {first, second}
    assert verify_with_jwks(old_token, published)["sub"] == "a"
    assert verify_with_jwks(sign(keyring, {"sub": "b"}), published)["sub"] == "b"


async def test_unknown_algorithm_is_refused_and_changes_nothing(
    store: Store, master_key: MasterKey, clock: Clock
) -> None:
    keyring = keyring_for(store, master_key, clock)
    before = await keyring.load()
    for bad in ("HS256", "none", "es256"):
        with pytest.raises(ValueError, match="unsupported signing algorithm"):
            await keyring.rotate(bad)
    assert keyring.active() == before
    assert len(await store.list_signing_keys()) == 1


async def test_concurrent_rotations_leave_exactly_one_active_key(
    store: Store, master_key: MasterKey, clock: Clock
) -> None:
    keyring = keyring_for(store, master_key, clock)
    first = await keyring.load()
    rotated = await asyncio.gather(*(keyring.rotate() for _ in range(5)))
    rows = await keys_by_kid(store)
    assert len(rows) == 6
    active = [row for row in rows.values() if row.active]
    assert len(active) == 1
    assert active[0].kid in {row.kid for row in rotated}
    assert keyring.active().kid == active[0].kid
    assert all(row.retires_at is not None for row in rows.values() if not row.active)
    assert rows[first.kid].retires_at is not None


# ---- other replicas ----


async def test_another_replica_notices_a_rotation_within_the_refresh_interval(
    sqlite_url: str, store: Store, master_key: MasterKey, clock: Clock
) -> None:
    other_store = Store.connect(sqlite_url)
    try:
        here = keyring_for(store, master_key, clock)
        there = keyring_for(other_store, master_key, clock)
        old = await here.load()
        await there.load()
        new = await here.rotate()
        assert here.active().kid == new.kid
        # The other replica signs with the previous key for a few seconds: it still verifies everywhere.
        assert there.active().kid == old.kid
        clock.advance(4.9)
        assert (await there.current()).kid == old.kid
        clock.advance(0.1)
        assert (await there.current()).kid == new.kid
        assert [k["kid"] for k in (await there.jwks())["keys"]] == [old.kid, new.kid]
    finally:
        await other_store.close()


async def test_a_store_outage_keeps_the_key_only_within_the_staleness_margin(
    store: Store, master_key: MasterKey, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = keyring_for(store, master_key, clock)
    active = await keyring.load()

    async def unavailable() -> None:
        raise sa.exc.OperationalError("SELECT", {}, OSError("connection refused"))

    monkeypatch.setattr(store, "active_signing_key", unavailable)
    clock.advance(30)
    assert (await keyring.current()) == active  # confirmed 30 s ago: fine to keep signing
    clock.advance(29.9)
    assert (await keyring.current()) == active
    clock.advance(0.1)
    # 60 s without confirmation: a token signed now might outlive the key's retirement; refuse.
    with pytest.raises(sa.exc.OperationalError):
        await keyring.current()
    monkeypatch.undo()
    assert (await keyring.current()) == active


# ---- secrecy ----


async def test_private_keys_are_sealed_at_rest(
    sqlite_url: str, store: Store, master_key: MasterKey, clock: Clock
) -> None:
    keyring = keyring_for(store, master_key, clock)
    await keyring.load()
    for algorithm in signing_keys.ALGORITHMS:
        await keyring.rotate(algorithm)
    with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as raw:
        rows = raw.execute("SELECT kid, public_jwk, encrypted_private_key FROM signing_keys").fetchall()
    assert len(rows) == 4
    for kid, public, sealed in rows:
        pem = master_key.open(sealed, signing_keys.sealing_purpose(kid))
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        # Neither the PEM nor any line of its base64 body appears in the stored bytes.
        assert b"-----BEGIN" not in sealed
        assert not any(line in sealed for line in pem.splitlines()[1:-1])
        assert not PRIVATE_MEMBERS & set(json.loads(public))
        # Sealed for this kid only: the ciphertext moved to another row does not open.
        with pytest.raises(MasterKeyError):
            master_key.open(sealed, signing_keys.sealing_purpose(kid + "x"))


async def test_jwks_never_carries_private_members(store: Store, master_key: MasterKey, clock: Clock) -> None:
    keyring = keyring_for(store, master_key, clock)
    await keyring.load()
    for algorithm in signing_keys.ALGORITHMS:
        await keyring.rotate(algorithm)
    published = await keyring.jwks()
    assert len(published["keys"]) == 4
    for jwk in published["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk)
        assert jwk["use"] == "sig"
        assert jwk["alg"] in signing_keys.ALGORITHMS
        assert jwk["kid"]
        assert signing_keys.thumbprint(jwk) == jwk["kid"]
    # Even a stored public JWK that somehow holds private members is published without them.
    leaky = json.loads(signing_keys.generate("RS256", master_key).public_jwk) | {
        name: "AAAA" for name in PRIVATE_MEMBERS
    }
    row = models.SigningKey(
        kid="k", algorithm="RS256", public_jwk=json.dumps(leaky), encrypted_private_key=b""
    )
    assert not PRIVATE_MEMBERS & set(public_jwk(row))


# ---- the admin RPCs, in process ----


@pytest.fixture
async def admin_server(
    store: Store, master_key: MasterKey
) -> AsyncIterator[tuple[admin_pb2_grpc.AdminServiceStub, IssuingKeyring, SigningKeyRing]]:
    keyring = IssuingKeyring(store, master_key, algorithm="EdDSA")
    await keyring.load()
    # A ring that never refreshes on its own (its clock stands still): only the rotation's change event,
    # applied by this replica's invalidation bus, can teach it.
    ring = SigningKeyRing(store.list_signing_keys, clock=lambda: 0.0)
    await ring.reload()
    caches = CacheRegistry()
    caches.add_key_ring("signing_keys", ring.reload)
    InvalidationBus(caches).attach(store)
    servicer = AdminServicer(store, Catalogue.load(), master_key, keyring=keyring)
    server = grpc.aio.server(interceptors=[GuardInterceptor()])
    admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield admin_pb2_grpc.AdminServiceStub(channel), keyring, ring
    await server.stop(None)


@pytest.mark.server
async def test_admin_rotate_and_list(
    admin_server: tuple[admin_pb2_grpc.AdminServiceStub, IssuingKeyring, SigningKeyRing],
) -> None:
    stub, keyring, ring = admin_server
    first = keyring.active().kid
    rotated = await stub.RotateSigningKey(admin_pb2.RotateSigningKeyRequest())
    assert rotated.algorithm == "EdDSA"  # empty: the configured algorithm
    assert rotated.active
    assert not rotated.HasField("retires_at")
    assert keyring.active().kid == rotated.kid
    assert await ring.key(rotated.kid) is not None  # this replica verifies the new key at once
    rs = await stub.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(algorithm="RS256"))
    assert rs.algorithm == "RS256"
    listed = (await stub.ListSigningKeys(admin_pb2.ListSigningKeysRequest())).keys
    assert [key.kid for key in listed] == [first, rotated.kid, rs.kid]
    assert [key.active for key in listed] == [False, False, True]
    assert all(key.HasField("retires_at") for key in listed[:2])
    for key in listed:
        assert not PRIVATE_MEMBERS & set(json.loads(key.public_jwk))


@pytest.mark.server
async def test_admin_rotate_refuses_an_unknown_algorithm(
    admin_server: tuple[admin_pb2_grpc.AdminServiceStub, IssuingKeyring, SigningKeyRing],
) -> None:
    stub, keyring, _ = admin_server
    before = keyring.active()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(algorithm="HS256"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert invalid_field(caught.value) == "algorithm"
    assert keyring.active() == before


@pytest.mark.server
async def test_admin_rotate_without_a_keyring_is_unimplemented(store: Store, master_key: MasterKey) -> None:
    server = grpc.aio.server(interceptors=[GuardInterceptor()])
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(store, Catalogue.load(), master_key), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin_pb2_grpc.AdminServiceStub(channel).RotateSigningKey(
                    admin_pb2.RotateSigningKeyRequest()
                )
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(None)


# ---- PostgreSQL ----


async def test_postgresql_rotations_from_two_replicas_leave_one_active_key(
    postgres: object, master_key: MasterKey
) -> None:
    url = postgres.create_database(f"i5_{uuid.uuid4().hex[:10]}")  # type: ignore[attr-defined]
    await database.migrate_async(url)
    first, second = Store.connect(url), Store.connect(url)
    try:
        here, there = IssuingKeyring(first, master_key), IssuingKeyring(second, master_key)
        original = await here.load()
        assert (await there.load()).kid == original.kid
        rotated = await asyncio.gather(*(ring.rotate() for ring in (here, there) * 3))
        rows = await keys_by_kid(first)
        assert len(rows) == 7
        (active,) = [row for row in rows.values() if row.active]
        assert active.kid in {row.kid for row in rotated}
        assert all(row.retires_at is not None for row in rows.values() if not row.active)
        # Each replica signs with the winner once it looks again; every key is still published.
        await here.refresh_if_stale(0)
        await there.refresh_if_stale(0)
        assert here.active().kid == there.active().kid == active.kid
        assert {k["kid"] for k in (await there.jwks())["keys"]} == set(rows)
    finally:
        await first.close()
        await second.close()


# ---- through the real server ----


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[WatchwordProcess]:
    with WatchwordProcess(tmp_path / "data", env={"WATCHWORD_SIGNING_ALGORITHM": "EdDSA"}) as process:
        yield process


@pytest.mark.server
def test_rotate_signing_key_through_the_real_server(server_process: WatchwordProcess) -> None:
    admin, md = server_process.admin(), server_process.admin_metadata
    (initial,) = admin.ListSigningKeys(admin_pb2.ListSigningKeysRequest(), metadata=md, timeout=10).keys
    rotated = admin.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=md, timeout=30)
    assert rotated.algorithm == "EdDSA"
    assert rotated.active
    keys = admin.ListSigningKeys(admin_pb2.ListSigningKeysRequest(), metadata=md, timeout=10).keys
    assert len(keys) == 2
    by_kid = {key.kid: key for key in keys}
    assert by_kid[rotated.kid].active
    assert not by_kid[rotated.kid].HasField("retires_at")
    old = by_kid[initial.kid]
    assert not old.active
    assert old.HasField("retires_at")
    # The default maximum token lifetime (a day) plus the staleness margin, from about now.
    left = old.retires_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < left <= timedelta(days=1, minutes=1)
    for key in keys:
        assert not PRIVATE_MEMBERS & set(json.loads(key.public_jwk))
    with pytest.raises(grpc.RpcError) as caught:
        admin.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(algorithm="HS256"), metadata=md, timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert invalid_field(caught.value) == "algorithm"
