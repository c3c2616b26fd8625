"""The registry of JWT verifiers, in the order a JWT is offered to them (PyJWT's algorithm registry,
Authlib's `ClientAuthentication._methods`): the first that recognises a token verifies it.

C7 first: any JWT beside a connector id (T4, T5, a bare token with `client_id`) is a subject token,
whatever its algorithm. Then C4: an HMAC (`HS*`) JWT is a tenant token. Then C8: a JWT whose `iss` is
Watchword's own. C1 last, when issuers are configured: any other JWT must come from one of them. External
issuers never get HMAC algorithms, so a public key can never be used as an HMAC secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from watchword import reasons
from watchword.domain import PresentedCredential, Principal, Refusal
from watchword.identify import kinds
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.identify.sealed_keys import SealedKeys
from watchword.identify.subject_jwt import SubjectJwtVerifier
from watchword.identify.tenant_jwt import TenantJwtVerifier
from watchword.identify.verifier import (
    CredentialLookup,
    JwtSettings,
    JwtVerifier,
    PresentedJwt,
    refusal_for,
    refuse,
    transport_refusal,
)
from watchword.identify.watchword_token import SigningKeyRing, WatchwordTokenVerifier
from watchword.jose import jws


@dataclass(frozen=True, slots=True)
class Dependencies:
    """What the JWT verifiers are built with, once."""

    lookup: CredentialLookup
    sealed_keys: SealedKeys
    signing_keys: SigningKeyRing
    settings: JwtSettings
    external: ExternalJwtVerifier | None = None  # C1: started and closed by the app


def jwt_verifiers(deps: Dependencies) -> tuple[JwtVerifier, ...]:
    """Every JWT verifier, in routing order (see the module's docstring)."""
    found: list[JwtVerifier] = [
        SubjectJwtVerifier(deps.lookup, deps.sealed_keys, deps.settings),
        TenantJwtVerifier(deps.lookup, deps.sealed_keys, deps.settings),
        WatchwordTokenVerifier(deps.signing_keys, deps.lookup, deps.settings),
    ]
    if deps.external is not None:
        found.append(deps.external)
    return tuple(found)


class JwtRouter:
    """Parses a presented JWT once and hands it to the first verifier that recognises it."""

    def __init__(self, verifiers: tuple[JwtVerifier, ...], max_token_bytes: int) -> None:
        self.verifiers = verifiers
        self._max_token_bytes = max_token_bytes

    async def verify(self, presented: PresentedCredential, now: datetime) -> Principal | Refusal:
        try:
            parsed = jws.parse(presented.token, max_bytes=self._max_token_bytes)
        except jws.JwsError as exc:
            return refusal_for(exc)
        jwt = PresentedJwt(presented, parsed)
        for verifier in self.verifiers:
            if verifier.recognises(jwt):
                refusal = transport_refusal(presented.transport, kinds.TRANSPORTS[verifier.kind])
                return refusal if refusal is not None else await verifier.verify(jwt, now)
        return refuse(reasons.TOKEN_ISSUER_UNKNOWN, "the token's issuer is not configured")
