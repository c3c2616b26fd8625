"""C4 tenant-signed JWTs (Hivekit): HS256 tokens a tenant signs with one of its signing secrets.

The `kid` names the signing secret (created through the admin API). A token without a `kid`, with a
`kid` of no signing secret, or with an algorithm the secret was not created for, is refused. When the
token names its tenant (`tnd`, as Hivekit's tokens do), it must be the secret's organization. The
principal's permissions are the token's `permissions` intersected with the secret's ceiling (S4).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime

from watchword import reasons
from watchword.domain import CredentialKind, PresentedCredential, Principal, Refusal, Transport
from watchword.identify.credential_state import proved_secret_version, state_refusal
from watchword.identify.sealed_keys import SealedKeys, verify_with_any
from watchword.jose import claims as jwt_claims
from watchword.jose import jws
from watchword.store.models import Credential

ACCEPTED_TRANSPORTS = frozenset({Transport.BEARER, Transport.COOKIE, Transport.BARE, Transport.BATCH_ENTRY})
REQUIRED_CLAIMS = ("sub", "iat", "exp", "iss", "jti")
PERMISSIONS_CLAIM = "permissions"
DATA_PROVIDER_CLAIM = "data_provider_patterns"
TENANT_CLAIM = "tnd"
MAX_LIST_ITEMS = 256
# Longest lifetime (exp - iat) a tenant- or connector-signed token may claim; configured by
# `max_tenant_token_lifetime_seconds`.
DEFAULT_MAX_LIFETIME = 86400.0
KEY_REASONS = frozenset({reasons.TOKEN_SIGNATURE_INVALID, reasons.TOKEN_KEY_UNKNOWN})
SIGNATURE_MESSAGE = "the token's signature does not verify with any key of its signer"

CredentialLookup = Callable[[str], Awaitable[Credential | None]]


def _refuse(reason: str, message: str) -> Refusal:
    return Refusal(reason=reason, message=message)


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


def key_refusal(detail: str) -> Refusal:
    """An unknown signing key and a wrong signature look the same to the caller, so nobody learns which
    ids name a signing secret or a connector (C4, C7); `detail` tells them apart in the audit log only."""
    return Refusal(reasons.TOKEN_SIGNATURE_INVALID, SIGNATURE_MESSAGE, detail=detail)


def verify_sealed(
    parsed: jws.ParsedJws,
    record: Credential,
    sealed_keys: SealedKeys,
    now: datetime,
    algorithms: Collection[str],
) -> int | Refusal:
    """C4/C7: check the signature with the record's current secret, or its previous one during an
    overlap; the index of the one that verified (0 current, 1 previous), or the refusal."""
    try:
        jws.allowed(parsed, algorithms)
        return verify_with_any(parsed, sealed_keys.keys(record, now, parsed.algorithm))
    except jws.JwsError as exc:
        return key_refusal(str(exc)) if exc.reason in KEY_REASONS else _refuse(exc.reason, str(exc))


async def verify(
    parsed: jws.ParsedJws,
    presented: PresentedCredential,
    lookup: CredentialLookup,
    sealed_keys: SealedKeys,
    now: datetime,
    leeway: float,
    max_lifetime: float = DEFAULT_MAX_LIFETIME,
) -> Principal | Refusal:
    if presented.transport not in ACCEPTED_TRANSPORTS:
        return _refuse(reasons.TRANSPORT_NOT_ALLOWED, "tenant tokens are not accepted over this transport")
    kid = parsed.kid
    record = await lookup(kid) if kid and len(kid) <= 64 else None
    if record is None or record.kind != int(CredentialKind.TENANT_SIGNING_SECRET):
        return key_refusal("no signing secret has the token's kid")
    used = verify_sealed(parsed, record, sealed_keys, now, record.algorithms)
    if isinstance(used, Refusal):
        return used
    refusal = state_refusal(record, now, "the token's signing secret")
    if refusal is not None:
        return refusal
    principal = _principal(parsed.claims, record, presented, now, leeway, max_lifetime)
    if isinstance(principal, Refusal):
        return principal
    # I6: a token Watchword mints for this principal (the internal token) dies with the secret used.
    return replace(principal, secret_version=proved_secret_version(record, used > 0))


def _principal(
    claims: dict[str, object],
    record: Credential,
    presented: PresentedCredential,
    now: datetime,
    leeway: float,
    max_lifetime: float,
) -> Principal | Refusal:
    try:
        jwt_claims.validate(
            claims,
            now=now.timestamp(),
            leeway=leeway,
            issuer=None,
            audience=None,
            required=REQUIRED_CLAIMS,
            max_lifetime=max_lifetime,
        )
        if TENANT_CLAIM in claims and claims[TENANT_CLAIM] != record.organization_id:
            return key_refusal("the token's tnd is not the signing secret's organization")
        subject, issuer, token_id = claims["sub"], claims["iss"], claims["jti"]
        if not all(isinstance(v, str) and v for v in (subject, issuer, token_id)):
            return _refuse(reasons.TOKEN_CLAIMS_INVALID, "sub, iss and jti must be non-empty strings")
        requested = string_list(claims.get(PERMISSIONS_CLAIM), PERMISSIONS_CLAIM)
        patterns = string_list(claims.get(DATA_PROVIDER_CLAIM), DATA_PROVIDER_CLAIM)
    except jwt_claims.ClaimsError as exc:
        return _refuse(exc.reason, str(exc))
    return Principal(
        id=str(subject),
        kind=CredentialKind.TENANT_JWT,
        transport=presented.transport,
        credential_id=record.id,
        organization_id=record.organization_id or "",
        permissions=frozenset(requested) & frozenset(record.permissions),
        expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),  # type: ignore[arg-type]
        issuer=str(issuer),
        data_provider_patterns=patterns,
        token_id=str(token_id),
    )
