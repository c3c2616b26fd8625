"""What a replica's caches cost in memory when every one of them is full (issue #12, section 8).

    .venv/bin/python bench/cache_memory.py [--scale 1.0]

Every cache a replica keeps is bounded by entries (the per-credential ones by `cache_max_entries`, the
others by constants). This fills each one past its bound with realistic
entries (records, principals, JWTs of the usual size, parsed keys), checks it stayed at its bound, and
reads the resident memory (`VmRSS`) before and after: the growth is what that cache costs when full.
`--scale 0.01` shrinks every bound (and so the run) a hundredfold; the tests run it that way.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import secrets
import sys
import time
from collections.abc import Callable, Sized
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from watchword import secret_format
from watchword.api import convert
from watchword.config import Settings
from watchword.domain import CredentialKind, PresentedCredential, Principal, Transport
from watchword.identify import cache, opaque_secret, sealed_keys, verified_tokens
from watchword.identify.oauth_client import MAX_PUBLIC_KEYS
from watchword.jose.jwk import hmac_key, public_key
from watchword.outbound import signer
from watchword.outbound import token_cache as token_fetcher
from watchword.store.models import Application, Credential, Membership, OutboundCredential

NOW = datetime.now(UTC)
JWT_BYTES = 600  # a typical C1/C8 access token


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def credential(index: int) -> Credential:
    credential_id = secret_format.new_credential_id()
    return Credential(
        id=credential_id,
        kind=int(CredentialKind.API_KEY),
        organization_id=f"org-{index:08d}-0000-0000-0000-000000000000",
        name=f"key {index}",
        secret_hash=secrets.token_hex(32),
        secret_hint=f"wwak_{credential_id}",
        permissions=["event.send", "application.list", "application.get"],
        event_types_allowed=["invoice.*"],
    )


def outbound(index: int) -> OutboundCredential:
    return OutboundCredential(
        id=f"{index:016d}",
        organization_id=f"org-{index:032d}",
        name=f"webhook {index}",
        scheme=1,
        sealed_secrets=secrets.token_bytes(120),
    )


def principal(record: Credential, token_id: str = "") -> Principal:
    return Principal(
        id=record.id,
        kind=CredentialKind.API_KEY,
        transport=Transport.BEARER,
        credential_id=record.id,
        organization_id=record.organization_id or "",
        permissions=frozenset(record.permissions),
        expires_at=NOW + timedelta(hours=1),
        token_id=token_id,
        secret_version=secrets.token_urlsafe(16),
    )


def jwt_like() -> str:
    return ".".join(secrets.token_urlsafe(n) for n in (60, JWT_BYTES * 3 // 4 - 150, 64))


@dataclass
class Filled:
    name: str
    bound: int
    kept: int
    kib: int


def fill_ttl(bound: int, make: Callable[[int], object]) -> Sized:
    async def nothing(_key: str) -> None:
        return None

    ttl: cache.TtlCache[object] = cache.TtlCache(nothing, ttl=3600, max_entries=bound)
    for index in range(bound + bound // 10):
        ttl._remember(f"{index:016d}", make(index))
    return ttl


def fill_verified_secrets(bound: int) -> Sized:
    memo = opaque_secret.VerifiedSecrets(max_entries=bound)
    for index in range(bound + bound // 10):
        record = credential(index)
        token = secret_format.mint(CredentialKind.API_KEY, record.id)
        memo.remember(PresentedCredential(token, Transport.BEARER), record, principal(record), True)
    return memo


def fill_verified_tokens(bound: int) -> Sized:
    async def lookup(_credential_id: str) -> Credential | None:
        return None

    tokens = verified_tokens.VerifiedTokens(lookup, max_entries=bound)

    async def fill() -> None:
        for index in range(bound + bound // 10):
            presented = PresentedCredential(jwt_like(), Transport.BEARER)
            await tokens.remember(presented, principal(credential(index), secrets.token_urlsafe(18)))

    asyncio.run(fill())
    return tokens


def fill_principal_messages(bound: int) -> Sized:
    messages = convert.PrincipalMessages(max_entries=bound)
    for index in range(bound + bound // 10):
        messages.get(principal(credential(index)))
    return messages._entries


def fill_sealed_keys(bound: int) -> Sized:
    sealed_keys.MAX_ENTRIES = bound
    keys = sealed_keys.SealedKeys(master_key=None)  # type: ignore[arg-type]
    for index in range(bound + bound // 10):
        secret = secrets.token_bytes(32)
        keys._keys[f"{index:016d}"] = (secret, None, [hmac_key(secret, kid=f"{index:016d}")])
        cache.trim_oldest(keys._keys, sealed_keys.MAX_ENTRIES)
    return keys._keys


def _ec_public(index: int) -> object:
    return public_key(ec.generate_private_key(ec.SECP256R1()).public_key(), kid=str(index), algorithm="ES256")


def fill_client_keys(bound: int) -> Sized:
    keys: dict[tuple[str, str], object] = {}
    for index in range(bound + bound // 10):
        keys[(f"{index:016d}", "{}")] = _ec_public(index)
        cache.trim_oldest(keys, bound)
    return keys


def fill_outbound_private_keys(bound: int) -> Sized:
    signer.MAX_PRIVATE_KEYS = bound
    keys: dict[str, tuple[str, object]] = {}
    for index in range(bound + bound // 10):
        keys[f"{index:016d}"] = ("v1", ec.generate_private_key(ec.SECP256R1()))
        cache.trim_oldest(keys, signer.MAX_PRIVATE_KEYS)
    return keys


def fill_outbound_tokens(bound: int) -> Sized:
    token_fetcher.MAX_ENTRIES = bound
    tokens = token_fetcher.TokenCache(guard=token_fetcher.NetworkGuard())
    started = time.monotonic()
    for index in range(bound + bound // 10):
        key = token_fetcher._Key(f"{index:016d}", "v1", ("client_secret_post", "https://idp/token"), "")
        tokens._store(key, jwt_like(), 3600.0, started)
    kept = dict(tokens._entries)  # the entries themselves, still referenced once the cache is closed
    asyncio.run(tokens.close())
    return kept


# Every filled cache stays alive to the end, as in a replica: memory freed by one case would otherwise be
# reused by the next and hide its cost.
_ALIVE: list[Sized] = []


def measure(name: str, bound: int, fill: Callable[[int], Sized]) -> Filled:
    gc.collect()
    before = rss_kib()
    filled = fill(bound)
    _ALIVE.append(filled)
    gc.collect()
    return Filled(name, bound, len(filled), rss_kib() - before)


def cases(scale: float) -> list[tuple[str, int, Callable[[int], Sized]]]:
    def scaled(bound: int) -> int:
        return max(10, int(bound * scale))

    per_credential = scaled(Settings.model_fields["cache_max_entries"].default)
    return [
        ("credentials (TtlCache)", per_credential, lambda n: fill_ttl(n, credential)),
        ("applications (TtlCache)", per_credential, lambda n: fill_ttl(n, lambda i: Application(
            id=f"app-{i:032d}", organization_id=f"org-{i:032d}", name=f"application {i}"))),
        ("memberships (TtlCache)", per_credential, lambda n: fill_ttl(n, lambda i: [Membership(
            organization_id=f"org-{i:032d}", user_id=f"user-{i}", roles=["editor"])])),
        ("revocations (TtlCache)", per_credential, lambda n: fill_ttl(n, lambda _i: True)),
        ("outbound credentials (TtlCache)", scaled(cache.DEFAULT_MAX_ENTRIES), lambda n: fill_ttl(
            n, outbound)),
        ("verified secrets", per_credential, fill_verified_secrets),
        ("verified tokens (JWTs)", per_credential, fill_verified_tokens),
        ("principal messages", scaled(10_000), fill_principal_messages),
        ("sealed HMAC keys", scaled(sealed_keys.MAX_ENTRIES), fill_sealed_keys),
        ("private_key_jwt client keys", scaled(MAX_PUBLIC_KEYS), fill_client_keys),
        ("outbound O4 private keys", scaled(signer.MAX_PRIVATE_KEYS), fill_outbound_private_keys),
        ("outbound access tokens", scaled(token_fetcher.MAX_ENTRIES), fill_outbound_tokens),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of every bound to fill")
    args = parser.parse_args(argv)
    base = rss_kib()
    print(f"Cache memory at the bounds (scale {args.scale:g}); process before filling: {base / 1024:.1f} MiB")
    print(f"{'cache':<34}{'bound':>9}{'kept':>9}{'MiB':>9}")
    total = 0
    for name, bound, fill in cases(args.scale):
        filled = measure(name, bound, fill)
        total += filled.kib
        print(f"{filled.name:<34}{filled.bound:>9}{filled.kept:>9}{filled.kib / 1024:>9.1f}")
        if filled.kept > filled.bound:
            print(f"{name} holds {filled.kept} entries, over its bound of {bound}", file=sys.stderr)
            return 1
    print(f"{'all caches full':<34}{'':>9}{'':>9}{total / 1024:>9.1f}")
    print(f"process after filling: {rss_kib() / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
