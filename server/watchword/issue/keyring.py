"""Watchword's private signing keys for issuing tokens (I5): the active key, opened once and held in
memory; rotation with overlap; the public JWK set.

Verification is elsewhere (`identify.watchword_token.SigningKeyRing`, public keys only). This module is
the only place a private key is ever unsealed.

Staleness across replicas. `active()` never touches the store. A rotation on another replica is seen by
`current()` (what issuers should call), which re-reads the active key's `kid` at most every
`refresh_seconds` and unseals a key only when the `kid` changed. Until then this replica keeps signing
with the previous key, which is harmless because that key verifies everywhere until it retires. To make
"until it retires" cover those tokens too, a superseded key retires at
`now + max_token_lifetime + staleness_margin`, and `current()` refuses to hand out a key that the store
has not confirmed as active within `staleness_margin` (e.g. the store has been unreachable that long):
a token signed with a key is then verifiable until its own `exp`. The margin (60 s, far above the 5 s
refresh) also absorbs lock waits during a rotation and modest clock skew between replicas.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from watchword.crypto.master_key import MasterKey, MasterKeyError
from watchword.issue import signing_keys
from watchword.store.models import SigningKey, utcnow
from watchword.store.repository import Store

if TYPE_CHECKING:
    from watchword.config import Settings

log = logging.getLogger("watchword.keyring")

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

REFRESH_SECONDS = 5.0
STALENESS_MARGIN_SECONDS = 60.0
# The members a published JWK may carry: public key material and metadata. Anything else (d, p, q,
# dp, dq, qi, oth, k...) is dropped even if it somehow reached the stored public JWK.
_PUBLIC_MEMBERS = frozenset({"kty", "crv", "x", "y", "n", "e", "kid", "alg", "use"})
# Errors meaning "the store cannot be reached right now" (the guard answers them with UNAVAILABLE).
_STORE_ERRORS = (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError)


class SigningKeyError(Exception):
    """A stored signing key cannot be used (wrong type for its algorithm, does not match its kid)."""


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """The key that signs new tokens: put `kid` and `algorithm` in the JWS header, sign with
    `private_key` (a `cryptography` key object, accepted as is by PyJWT)."""

    kid: str
    algorithm: str
    private_key: PrivateKey


def _open(row: SigningKey, master_key: MasterKey) -> ActiveKey:
    """Unseal a stored key and check that it is what its row says (type and kid)."""
    try:
        pem = master_key.open(row.encrypted_private_key, signing_keys.sealing_purpose(row.kid))
    except MasterKeyError:
        raise MasterKeyError(
            f"signing key {row.kid} does not open with this master key: Watchword must start with the "
            "master key its signing keys were created under"
        ) from None
    private = serialization.load_pem_private_key(pem, password=None)
    if not signing_keys.fits(row.algorithm, private):
        raise SigningKeyError(f"signing key {row.kid}: stored key does not fit algorithm {row.algorithm}")
    # The published JWK and kid must describe this very key, or tokens would not verify anywhere.
    if (
        signing_keys.thumbprint(json.loads(row.public_jwk)) != row.kid
        or signing_keys.thumbprint(signing_keys.public_jwk_of(row.algorithm, private)) != row.kid
    ):
        raise SigningKeyError(f"signing key {row.kid}: private key and kid do not match")
    return ActiveKey(kid=row.kid, algorithm=row.algorithm, private_key=private)


def public_jwk(row: SigningKey) -> dict[str, Any]:
    """The row's JWK as published: public members only, with kid, alg and use=sig."""
    stored = json.loads(row.public_jwk)
    jwk = {name: value for name, value in stored.items() if name in _PUBLIC_MEMBERS}
    jwk.update({"kid": row.kid, "alg": row.algorithm, "use": "sig"})
    return jwk


class IssuingKeyring:
    """Owns Watchword's private signing keys for issuing. One per replica; `load()` once at start."""

    def __init__(
        self,
        store: Store,
        master_key: MasterKey,
        *,
        algorithm: str = signing_keys.DEFAULT_ALGORITHM,
        max_token_lifetime_seconds: float = 86400,
        refresh_seconds: float = REFRESH_SECONDS,
        staleness_margin_seconds: float = STALENESS_MARGIN_SECONDS,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if algorithm not in signing_keys.ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {algorithm!r}")
        if not 0 <= refresh_seconds <= staleness_margin_seconds:
            raise ValueError("need 0 <= refresh_seconds <= staleness_margin_seconds")
        self._store = store
        self._master_key = master_key
        self.algorithm = algorithm
        self.max_token_lifetime = timedelta(seconds=max_token_lifetime_seconds)
        self.staleness_margin = timedelta(seconds=staleness_margin_seconds)
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._active: ActiveKey | None = None
        self._confirmed_at = float("-inf")  # when the store last said `_active` is the active key
        self._attempted_at = float("-inf")  # when we last asked (successfully or not)
        self._refresh_lock = asyncio.Lock()
        self._jwks_rows: list[SigningKey] | None = None
        self._jwks_loaded_at = float("-inf")

    @classmethod
    def from_settings(cls, store: Store, master_key: MasterKey, settings: Settings) -> IssuingKeyring:
        """Built from `watchword.config.Settings` (signing_algorithm, max_token_lifetime_seconds)."""
        return cls(
            store,
            master_key,
            algorithm=settings.signing_algorithm,
            max_token_lifetime_seconds=settings.max_token_lifetime_seconds,
        )

    # ---- the active key ----

    async def load(self) -> ActiveKey:
        """Read the active key from the store (creating one with the configured algorithm when there
        is none yet) and unseal it. Raises MasterKeyError when the master key does not open it."""
        row = await self._store.active_signing_key()
        if row is None:
            row = await self._store.ensure_active_signing_key(await self._generate(self.algorithm))
        self._install(row)
        return self.active()

    def active(self) -> ActiveKey:
        """The key this replica signs with now; no store query. See `current()` for other replicas'
        rotations."""
        if self._active is None:
            raise RuntimeError("IssuingKeyring.load() must be awaited before signing")
        return self._active

    async def current(self) -> ActiveKey:
        """`active()`, after noticing a rotation made on another replica (at most `refresh_seconds`
        late). What issuers call per token: it queries the store at most once per interval."""
        await self.refresh_if_stale()
        return self.active()

    async def refresh_if_stale(self, max_age_seconds: float | None = None) -> None:
        """Re-read the active key when the last look is older than `max_age_seconds` (default
        `refresh_seconds`). A store failure keeps the current key while it was confirmed within the
        staleness margin, and is raised after that (so no token outlives its key)."""
        max_age = self._refresh_seconds if max_age_seconds is None else max_age_seconds
        if self._fresh(max_age):
            return
        async with self._refresh_lock:
            # Concurrent callers share one query: whoever waited finds it fresh.
            if self._fresh(max_age):
                return
            self._attempted_at = self._monotonic()
            try:
                row = await self._store.active_signing_key()
            except _STORE_ERRORS:
                if not self._confirmed_within_margin():
                    raise
                log.warning("cannot re-read the active signing key; signing with %s for now", self.kid)
                return
            if row is None:
                # Nobody deletes the active key; if it happens, keep signing only within the margin.
                if not self._confirmed_within_margin():
                    raise SigningKeyError("the store holds no active signing key")
                return
            self._install(row)

    def _fresh(self, max_age: float) -> bool:
        # A failed look counts for spacing retries, but never stretches the key's confirmation
        # beyond the margin that `retires_at` allows for.
        return self._monotonic() - self._attempted_at < max_age and self._confirmed_within_margin()

    def _confirmed_within_margin(self) -> bool:
        return self._monotonic() - self._confirmed_at < self.staleness_margin.total_seconds()

    @property
    def kid(self) -> str | None:
        return None if self._active is None else self._active.kid

    def _install(self, row: SigningKey) -> None:
        # Unsealing only when the kid changed keeps the per-refresh cost to one small query.
        if self._active is None or self._active.kid != row.kid:
            self._active = _open(row, self._master_key)
            self._jwks_rows = None  # a new key must be published at once
        self._confirmed_at = self._attempted_at = self._monotonic()

    # ---- rotation ----

    async def rotate(self, algorithm: str | None = None) -> SigningKey:
        """Make a new key the active one; the previous one keeps verifying until every token it
        signed has expired (`retires_at` = now + max token lifetime + staleness margin), then retires.
        Raises ValueError for an unknown algorithm."""
        algorithm = algorithm or self.algorithm
        new = await self._generate(algorithm)  # ValueError for an unknown algorithm
        now = self._clock()
        new.created_at = now
        stored = await self._store.rotate_signing_key(
            new, now + self.max_token_lifetime + self.staleness_margin
        )
        log.info("signing key rotated: %s (%s) now signs", stored.kid, stored.algorithm)
        # Reload from the store rather than trusting our own row: a concurrent rotation may have won.
        await self.refresh_if_stale(max_age_seconds=0)
        self._jwks_rows = None
        return stored

    async def _generate(self, algorithm: str) -> SigningKey:
        # RSA-3072 generation takes a noticeable fraction of a second: keep it off the event loop.
        new = await asyncio.to_thread(signing_keys.generate, algorithm, self._master_key)
        return SigningKey(
            kid=new.kid,
            algorithm=new.algorithm,
            public_jwk=new.public_jwk,
            encrypted_private_key=new.sealed_private_key,
        )

    # ---- publication ----

    async def jwks(self, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """The public JWK set (`{"keys": [...]}`) of every key not retired at `now`, oldest first:
        what `/.well-known/jwks.json` serves. Rows are cached for `refresh_seconds` so a public
        endpoint cannot turn into one store query per request; retirement is applied at each call."""
        now = now or self._clock()
        if self._jwks_rows is None or self._monotonic() - self._jwks_loaded_at >= self._refresh_seconds:
            self._jwks_rows = await self._store.signing_keys_for_jwks(self._clock())
            self._jwks_loaded_at = self._monotonic()
        return {
            "keys": [
                public_jwk(row) for row in self._jwks_rows if row.retires_at is None or row.retires_at > now
            ]
        }
