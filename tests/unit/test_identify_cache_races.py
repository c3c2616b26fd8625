"""Races between concurrent calls that share a cache entry (issue #12, section 8).

Each test interleaves two calls deterministically: the store lookup they both wait on is held by an
`asyncio.Event` until both are inside it, so the interleaving that once ended in KeyError -> INTERNAL
happens on every run, not by luck.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from watchword import secret_format
from watchword.domain import CredentialKind, PresentedCredential, Principal, Transport
from watchword.identify import opaque_secret
from watchword.identify.cache import TtlCache
from watchword.identify.verified_tokens import VerifiedTokens
from watchword.store.models import Credential

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class GatedStore:
    """A store whose every load, while `gated`, waits until the test releases it (`loads[i].set()`)."""

    def __init__(self, row: Credential) -> None:
        self.row = row
        self.loads: list[asyncio.Event] = []
        self.gated = False

    async def get(self, credential_id: str) -> Credential | None:
        if self.gated:
            release = asyncio.Event()
            self.loads.append(release)
            await release.wait()
        # A fresh object on every load, as the store hands out: the remembered one is no longer current.
        return Credential(**self.row.model_dump()) if credential_id == self.row.id else None


def api_key() -> tuple[Credential, str]:
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(CredentialKind.API_KEY, credential_id)
    row = Credential(
        id=credential_id,
        kind=int(CredentialKind.API_KEY),
        organization_id="org",
        name="k",
        secret_hash=secret_format.hash_secret(secret),
        secret_hint=secret_format.hint(secret),
        permissions=["event.send"],
    )
    return row, secret


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def until(condition: object, what: str) -> None:
    for _ in range(1000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never reached: {what}")


async def test_t7_two_calls_with_one_secret_whose_cache_entry_expired_both_answer() -> None:
    """The soak's INTERNAL: both calls find the remembered secret and wait on the one shared reload of
    its expired credential; another credential changes meanwhile, so the reload is not kept and the first
    call, having dropped the entry, queries again; the second call then dropped the entry again: KeyError.
    """
    row, secret = api_key()
    store, clock = GatedStore(row), Clock()
    credentials: TtlCache[Credential] = TtlCache(store.get, ttl=1.0, clock=clock)
    verified = opaque_secret.VerifiedSecrets()
    presented = PresentedCredential(secret, Transport.BEARER)

    async def call() -> object:
        verifier = opaque_secret.OpaqueSecretVerifier(credentials.get, frozenset(), verified)
        return await verifier.verify(presented, NOW)

    first = await call()
    assert isinstance(first, Principal)
    assert len(verified) == 1
    clock.now = 5.0  # the credential's cache entry expires
    store.gated = True
    both = asyncio.gather(call(), call())
    await until(lambda: len(store.loads) == 1 and len(credentials._loading) == 1, "one shared reload")
    await settle()  # the second call is parked on that reload too
    credentials.invalidate("another credential")  # any change: the reload in flight is not kept
    store.loads[0].set()
    # The first call drops the entry and, the reload not kept, queries again; hold that query while the
    # second call wakes on the shared reload and drops the entry too.
    await until(lambda: len(store.loads) == 2, "the first call querying again")
    await settle()
    store.gated = False
    store.loads[1].set()
    results = await both
    assert all(isinstance(result, Principal) for result in results), results
    assert len(verified) == 1, "the secret is remembered again, once"


async def test_t7_a_stale_entry_dropped_late_never_drops_a_fresh_one() -> None:
    """A call that decided its entry was stale must not drop the fresh entry another call kept since."""
    row, secret = api_key()
    store = GatedStore(row)
    verified = opaque_secret.VerifiedSecrets()
    presented = PresentedCredential(secret, Transport.BEARER)
    verifier = opaque_secret.OpaqueSecretVerifier(store.get, frozenset(), verified)
    assert isinstance(await verifier.verify(presented, NOW), Principal)
    store.gated = True
    slow = asyncio.ensure_future(verified.get(presented, store.get, NOW))
    await until(lambda: len(store.loads) == 1, "the slow call in the lookup")
    store.gated = False  # a second call verifies afresh and remembers a fresh entry
    fresh = await verifier.verify(presented, NOW)
    assert isinstance(fresh, Principal)
    kept = verified._entries[presented]
    store.loads[0].set()
    assert await slow is None
    assert verified._entries.get(presented) is kept, "the fresh entry survives the late drop"


async def test_t7_two_calls_with_one_jwt_whose_credential_changed_both_answer() -> None:
    row, _ = api_key()
    store = GatedStore(row)
    tokens = VerifiedTokens(store.get, max_age=60)
    presented = PresentedCredential("a.b.c", Transport.BEARER)
    principal = Principal(
        id="s",
        kind=CredentialKind.TENANT_JWT,
        transport=Transport.BEARER,
        credential_id=row.id,
        expires_at=NOW + timedelta(minutes=5),
    )
    await tokens.remember(presented, principal)
    row.secret_hash = "rotated"  # both calls will see a changed credential
    store.gated = True
    both = asyncio.gather(tokens.get(presented, NOW), tokens.get(presented, NOW))
    await until(lambda: len(store.loads) == 2, "both calls in the lookup")
    for release in store.loads:
        release.set()
    assert await both == [None, None]
    assert len(tokens) == 0
