"""C4 tenant-signed JWTs (Hivekit): HS256 tokens a tenant signs with one of its signing secrets.

The `kid` names the signing secret (created through the admin API). A token without a `kid`, with a
`kid` of no signing secret, or with an algorithm the secret was not created for, is refused. When the
token names its tenant (`tnd`, as Hivekit's tokens do), it must be the secret's organization. The
principal's permissions are the token's `permissions` intersected with the secret's ceiling (S4).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from watchword import reasons
from watchword.domain import CredentialKind, Principal, Refusal, Transport
from watchword.identify.credential_state import proved_secret_version
from watchword.identify.sealed_keys import SealedSecretJwtVerifier, key_refusal
from watchword.identify.verifier import PresentedJwt, refusal_for, refuse
from watchword.jose import claims as jwt_claims
from watchword.store.models import Credential

PERMISSIONS_CLAIM = "permissions"
DATA_PROVIDER_CLAIM = "data_provider_patterns"
TENANT_CLAIM = "tnd"
MAX_LIST_ITEMS = 256


def string_list(value: object, name: str) -> tuple[str, ...]:
    """A claim that must be a list of strings (absent: empty)."""
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or len(value) > MAX_LIST_ITEMS
        or not all(isinstance(v, str) for v in value)
    ):
        raise jwt_claims.ClaimsError(reasons.TOKEN_CLAIMS_INVALID, f"{name!r} must be a list of strings")
    return tuple(value)


class TenantJwtVerifier(SealedSecretJwtVerifier):
    """C4: an HMAC (`HS*`) JWT that is not beside a connector id (that would be C7)."""

    kind = CredentialKind.TENANT_JWT
    required_claims = ("sub", "iat", "exp", "iss", "jti")

    def recognises(self, jwt: PresentedJwt) -> bool:
        return jwt.parsed.algorithm.startswith("HS")

    async def verify(self, jwt: PresentedJwt, now: datetime) -> Principal | Refusal:
        parsed = jwt.parsed
        kid = parsed.kid
        record = await self._lookup(kid) if kid and len(kid) <= 64 else None
        if record is None or record.kind != int(CredentialKind.TENANT_SIGNING_SECRET):
            return key_refusal("no signing secret has the token's kid")
        used = self._signed_and_valid(parsed, record, now, record.algorithms, "the token's signing secret")
        if isinstance(used, Refusal):
            return used
        principal = _principal(parsed.claims, record, jwt.presented.transport)
        if isinstance(principal, Refusal):
            return principal
        # I6: a token Watchword mints for this principal (the internal token) dies with the secret used.
        return replace(principal, secret_version=proved_secret_version(record, used > 0))


def _principal(claims: dict[str, object], record: Credential, transport: Transport) -> Principal | Refusal:
    """The claims of a token whose signature, dates and required claims were checked."""
    if TENANT_CLAIM in claims and claims[TENANT_CLAIM] != record.organization_id:
        return key_refusal("the token's tnd is not the signing secret's organization")
    subject, issuer, token_id = claims["sub"], claims["iss"], claims["jti"]
    if not all(isinstance(v, str) and v for v in (subject, issuer, token_id)):
        return refuse(reasons.TOKEN_CLAIMS_INVALID, "sub, iss and jti must be non-empty strings")
    try:
        requested = string_list(claims.get(PERMISSIONS_CLAIM), PERMISSIONS_CLAIM)
        patterns = string_list(claims.get(DATA_PROVIDER_CLAIM), DATA_PROVIDER_CLAIM)
    except jwt_claims.ClaimsError as exc:
        return refusal_for(exc)
    return Principal(
        id=str(subject),
        kind=CredentialKind.TENANT_JWT,
        transport=transport,
        credential_id=record.id,
        organization_id=record.organization_id or "",
        permissions=frozenset(requested) & frozenset(record.permissions),
        expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),  # type: ignore[arg-type]
        issuer=str(issuer),
        data_provider_patterns=patterns,
        token_id=str(token_id),
    )
