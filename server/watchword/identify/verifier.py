"""The one interface every verifier has (Authorino's identity evaluators, PyJWT's algorithms).

A verifier is an object built once with its dependencies (the credential lookup, the sealed keys, the
settings...); `verify(credential, now)` turns what was presented into a `Principal` or a `Refusal`, never
raising for bad input. Its type parameter is what it reads: an opaque secret (`PresentedCredential`), a
JWT parsed once for routing (`PresentedJwt`), or a token endpoint's client authentication (C9). JWT
verifiers also say which JWTs are theirs (`recognises`); `identify/verifiers.py` asks them in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from watchword import reasons
from watchword.domain import CredentialKind, PresentedCredential, Principal, Refusal, Transport
from watchword.jose import claims as jwt_claims
from watchword.jose import jws
from watchword.store.models import Credential as StoredCredential

Input = TypeVar("Input", contravariant=True)
CredentialLookup = Callable[[str], Awaitable[StoredCredential | None]]
# Longest lifetime (exp - iat) a tenant- or connector-signed token (C4, C7) may claim.
DEFAULT_MAX_LIFETIME = 86400.0


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """How JWTs are checked: the clock leeway, and the issuer and audience of Watchword's own (C8)."""

    leeway_seconds: float = 30.0
    token_issuer: str = "urn:watchword"
    token_audience: str = "urn:watchword:api"
    token_endpoint: str = "urn:watchword:token"
    # Longest lifetime a tenant-signed (C4) or connector-signed (C7) token may claim.
    max_tenant_token_lifetime_seconds: float = DEFAULT_MAX_LIFETIME


class Verifier(Protocol[Input]):
    async def verify(self, credential: Input, now: datetime) -> Principal | Refusal: ...


@dataclass(frozen=True, slots=True)
class PresentedJwt:
    """A presented credential that is a compact JWS, parsed once: for routing, then for verifying."""

    presented: PresentedCredential
    parsed: jws.ParsedJws


class JwtVerifier(Verifier[PresentedJwt], Protocol):
    # Its row in the kinds table: the router refuses the transports that row does not list, before verify.
    kind: CredentialKind

    def recognises(self, jwt: PresentedJwt) -> bool:
        """Whether `jwt` is of this verifier's kind (asked in the registry's order; the first one wins)."""
        ...


def refuse(reason: str, message: str, detail: str = "") -> Refusal:
    """The one way a verifier refuses: a stable reason code (reasons.py), a message safe to show the
    caller and, for the audit log only, a `detail` the reason deliberately does not tell."""
    return Refusal(reason=reason, message=message, detail=detail)


def refusal_for(error: jws.JwsError | jwt_claims.ClaimsError) -> Refusal:
    """A JOSE check's failure, with the reason code it carries."""
    return refuse(error.reason, str(error))


def transport_refusal(transport: Transport, accepted: frozenset[Transport]) -> Refusal | None:
    """T1-T7: a kind is only accepted over its own transports (its row in the kinds table)."""
    if transport in accepted:
        return None
    return refuse(reasons.TRANSPORT_NOT_ALLOWED, "this credential is not accepted over this transport")
