"""E1: the short-lived JWT Envoy hands the upstream on allow (`x-watchword-internal-token`).

Signed with the active signing key (I5), so the upstream verifies it offline against Watchword's JWKS.
Its audience differs from Watchword's own (the settings refuse equal ones), so it is never accepted back as
a C8 credential. Signing costs a few hundred microseconds, so one token per principal is reused for the
first half of its lifetime; the cache is bounded and never lets a token outlive the credential behind it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from watchword.domain import Principal
from watchword.issue import tokens

MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class _Cached:
    token: str
    reuse_until: float


class InternalTokens:
    def __init__(
        self,
        keys: tokens.SigningKeySource,
        issuer: str,
        audience: str,
        lifetime_seconds: int,
        max_cached: int = MAX_CACHED,
    ) -> None:
        self._keys = keys
        self._settings = tokens.TokenSettings(
            issuer=issuer, audience=audience, default_lifetime=lifetime_seconds, max_lifetime=lifetime_seconds
        )
        self._lifetime = lifetime_seconds
        self._max_cached = max_cached
        self._cache: OrderedDict[Principal, _Cached] = OrderedDict()
        self.minted = 0  # for tests: how many signatures were made

    async def for_principal(self, principal: Principal) -> str:
        now = time.time()
        cached = self._cache.get(principal)
        if cached is not None and cached.reuse_until > now:
            self._cache.move_to_end(principal)
            return cached.token
        expires_in = self._lifetime
        if principal.expires_at is not None:
            # Never outlive the credential the token stands for.
            expires_in = min(expires_in, int(principal.expires_at.timestamp() - now))
        key = await self._keys.current()
        issued = tokens.mint(
            key,
            self._settings,
            subject=principal.id,
            client_id=principal.credential_id or principal.id,
            organization_id=principal.organization_id,
            scope=tuple(sorted(principal.permissions)),
            expires_in=max(expires_in, 1),
            credential_id=principal.credential_id or None,
            secret_version=principal.secret_version,
            acting_as=principal.subject,
        )
        self.minted += 1
        self._cache[principal] = _Cached(issued.access_token, now + max(expires_in, 1) / 2)
        self._cache.move_to_end(principal)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return issued.access_token
