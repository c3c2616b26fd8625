"""The registry of a replica's caches (`watchword.caches`, S6, I6): every cache the pipeline keeps is in
it, and a full flush and each change that concerns a cache reach it, so a new cache cannot silently miss
invalidation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from watchword.caches import CacheRegistry, RegisteredCache
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind, PresentedCredential, Principal, Transport
from watchword.extract import TransportSettings
from watchword.identify.cache import TtlCache
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.identify.issuer_settings import IssuerSettings
from watchword.identify.oauth_client import PublicKeys
from watchword.identify.opaque_secret import VerifiedSecrets
from watchword.identify.sealed_keys import SealedKeys, sealing_purpose
from watchword.identify.verified_tokens import VerifiedTokens
from watchword.invalidation import (
    CLEARS_EVERYTHING,
    RELOADS_KEY_RINGS,
    InvalidationBus,
    for_replica,
    replica_caches,
)
from watchword.issue.keyring import IssuingKeyring
from watchword.outbound.signer import OutboundSigner
from watchword.pipeline import Pipeline
from watchword.store import database, models
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.repository import Store

MASTER = MasterKey.from_text(generate(), "test")
ISSUER = IssuerSettings(issuer="https://sso.example", audiences=("api",), jwks_uri="https://sso.example/j")
# Reachable from the pipeline, holding dicts, and no cache of store state: each says why.
NOT_STORE_CACHES: dict[type, str] = {
    Store: "the store itself",
    Catalogue: "the roles and actions, read once at start",
    # Keys fetched from the issuers, not from the store: refreshed by their own cache time (C1) and
    # counted by the JWKS metrics; a store change says nothing about them.
    ExternalJwtVerifier: "the issuers' JWKS",
}
PUBLIC_JWK = json.dumps(
    ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite:///{tmp_path / 'caches.db'}"
    await database.migrate_async(url)
    store = Store.connect(url)
    yield store
    await store.close()


@pytest.fixture
def pipeline(store: Store) -> Pipeline:
    external = ExternalJwtVerifier([ISSUER])  # never started: only its shape matters here
    return Pipeline(store, Catalogue.load(), TransportSettings(), MASTER, external=external)


def _holders_of_dicts(root: object) -> Iterator[object]:
    """Every Watchword object reachable from `root` through attributes that keeps a dict: where a
    cache remembers things (bounded dicts, OrderedDicts), whatever its class is called."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen or not type(node).__module__.startswith("watchword"):
            continue
        seen.add(id(node))
        values = list(getattr(node, "__dict__", {}).values())
        values += [getattr(node, name, None) for name in getattr(type(node), "__slots__", ())]
        if any(isinstance(value, dict) for value in values):
            yield node
        if type(node) not in NOT_STORE_CACHES:
            pending.extend(values)


def _registered(caches: CacheRegistry) -> set[int]:
    rings = (getattr(ring.reload, "__self__", None) for ring in caches.key_rings)
    return {id(entry.cache) for entry in caches} | {id(ring) for ring in rings if ring is not None}


def test_s6_every_cache_the_pipeline_keeps_is_registered(pipeline: Pipeline) -> None:
    registered = _registered(pipeline.caches)
    unregistered = [
        type(node).__qualname__
        for node in _holders_of_dicts(pipeline)
        if id(node) not in registered and type(node) not in NOT_STORE_CACHES
    ]
    assert unregistered == [], "register these in Pipeline._registered_caches (watchword.caches)"
    # The walk sees them: a cache nested in a verifier is found as well as one on the pipeline.
    assert id(pipeline.clients.public_keys) in registered


def test_s6_the_replica_registers_the_pipelines_caches_the_outbound_ones_and_both_key_rings(
    pipeline: Pipeline, store: Store
) -> None:
    signer = OutboundSigner(store, MASTER)
    caches = replica_caches(pipeline, signer, IssuingKeyring(store, MASTER))
    assert caches.names() == [*pipeline.caches.names(), "outbound_credentials"]
    assert [ring.name for ring in caches.key_rings] == ["signing_keys", "issuing_key"]
    assert for_replica(store, caches, "").caches is caches


def test_metrics_and_outage_answers_reach_the_caches_registered_for_them(pipeline: Pipeline) -> None:
    counted = [name for name, _ in pipeline.caches.counted()]
    assert counted == ["credentials", "applications", "memberships", "revocations", "verified_tokens"]
    pipeline.caches.serve_stale_during_outage(5.0)
    stale = [entry.name for entry in pipeline.caches if getattr(entry.cache, "_outage_grace", 0) == 5.0]
    assert stale == ["credentials", "applications", "memberships", "revocations"]


def test_only_a_ttl_cache_may_serve_stale_and_names_are_unique() -> None:
    caches = CacheRegistry()
    with pytest.raises(TypeError, match="only a TtlCache"):
        caches.add("secrets", VerifiedSecrets(), {ChangeKind.CREDENTIAL}, serves_stale=True)
    caches.add("secrets", VerifiedSecrets(), {ChangeKind.CREDENTIAL})
    with pytest.raises(ValueError, match="registered already"):
        caches.add("secrets", VerifiedSecrets(), {ChangeKind.CREDENTIAL})


def test_i6_every_change_kind_reaches_something(pipeline: Pipeline, store: Store) -> None:
    caches = replica_caches(pipeline, OutboundSigner(store, MASTER), IssuingKeyring(store, MASTER))
    followed = {kind for entry in caches for kind in entry.keyed_by}
    assert set(ChangeKind) - followed - CLEARS_EVERYTHING - RELOADS_KEY_RINGS == set()


# ---- filling each kind of cache with one entry per key ----


def _record(key: str) -> models.Credential:
    return models.Credential(
        id=key,
        kind=int(CredentialKind.OAUTH_CLIENT),
        name=key,
        secret_hash=f"hash-{key}",
        secret_hint="",
        sealed_secret=MASTER.seal(b"a signing secret of 32 bytes or more", sealing_purpose(key)),
        public_jwk=PUBLIC_JWK,
    )


def _principal(key: str) -> tuple[PresentedCredential, Principal]:
    presented = PresentedCredential(token=f"token-{key}", transport=Transport.BEARER)
    principal = Principal(
        id=key, kind=CredentialKind.WATCHWORD_TOKEN, transport=Transport.BEARER, credential_id=key
    )
    return presented, principal


async def _fill_ttl(cache: TtlCache[Any], key: str) -> None:
    await cache.get(key)  # a miss is remembered too


async def _fill_tokens(cache: VerifiedTokens, key: str) -> None:
    await cache.remember(*_principal(key))


async def _fill_secrets(cache: VerifiedSecrets, key: str) -> None:
    presented, principal = _principal(key)
    cache.remember(presented, _record(key), principal, True)


async def _fill_sealed(cache: SealedKeys, key: str) -> None:
    cache.keys(_record(key), datetime.now(UTC))


async def _fill_public_keys(cache: PublicKeys, key: str) -> None:
    assert cache.get(_record(key)) is not None


FILLERS: dict[type, Callable[[Any, str], Awaitable[None]]] = {
    TtlCache: _fill_ttl,
    VerifiedTokens: _fill_tokens,
    VerifiedSecrets: _fill_secrets,
    SealedKeys: _fill_sealed,
    PublicKeys: _fill_public_keys,
}


async def _fill(entry: RegisteredCache, *keys: str) -> None:
    filler = FILLERS.get(type(entry.cache))
    assert filler is not None, f"add a filler for {type(entry.cache).__qualname__} ({entry.name})"
    for key in keys:
        await filler(entry.cache, key)
    assert len(entry.cache) == len(keys), entry.name


async def test_s6_every_registered_cache_is_emptied_by_a_full_flush(pipeline: Pipeline) -> None:
    bus = InvalidationBus(pipeline.caches)
    for entry in pipeline.caches:
        await _fill(entry, "a", "b")
    reloads = pipeline.signing_keys.reloads
    await bus.flush()
    assert {entry.name: len(entry.cache) for entry in pipeline.caches} == dict.fromkeys(
        pipeline.caches.names(), 0
    )
    assert pipeline.signing_keys.reloads == reloads + 1


@pytest.mark.parametrize("kind", sorted(CLEARS_EVERYTHING))
async def test_s6_a_cascading_deletion_empties_every_registered_cache(
    pipeline: Pipeline, kind: ChangeKind
) -> None:
    for entry in pipeline.caches:
        await _fill(entry, "a", "b")
    await InvalidationBus(pipeline.caches).apply(Change(kind, ("unrelated",)))
    assert all(len(entry.cache) == 0 for entry in pipeline.caches)


async def test_i6_every_registered_cache_drops_exactly_the_keys_its_changes_name(pipeline: Pipeline) -> None:
    bus = InvalidationBus(pipeline.caches)
    for entry in pipeline.caches:
        assert entry.keyed_by, f"{entry.name} follows no change"
        for kind in entry.keyed_by:
            entry.cache.clear()
            await _fill(entry, "a", "b")
            await bus.apply(Change(kind, ("a",)))
            assert len(entry.cache) == 1, (entry.name, kind)
            await bus.apply(Change(kind, ("b",)))  # the other key: the first change dropped "a" only
            assert len(entry.cache) == 0, (entry.name, kind)
        others = set(ChangeKind) - entry.keyed_by - CLEARS_EVERYTHING
        await _fill(entry, "a")
        for kind in others:
            await bus.apply(Change(kind, ("a",)))
        assert len(entry.cache) == 1, f"{entry.name} dropped by a change that does not concern it"
