"""C7 subject-scoped JWTs (Hull): a token acting as one user or one account, signed (HS256) with the
connector's secret and presented in the connector token header, with the connector id beside it.

In a batch (T7) an entry may carry the token alone; the connector is then the token's `iss`, which is
safe because the signature is checked with that connector's own secret. The subject comes from
Hull's `io.hull.asUser` / `io.hull.asAccount` claims (an object with `id`, `external_id` or `email`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from watchword import reasons
from watchword.domain import (
    SUBJECT_ACTIONS,
    CredentialKind,
    PresentedCredential,
    Principal,
    Refusal,
    Subject,
    Transport,
)
from watchword.identify.credential_state import proved_secret_version, state_refusal
from watchword.identify.sealed_keys import SealedKeys
from watchword.identify.tenant_jwt import DEFAULT_MAX_LIFETIME, key_refusal, verify_sealed
from watchword.jose import claims as jwt_claims
from watchword.jose import jws
from watchword.store.models import Credential

ACCEPTED_TRANSPORTS = frozenset(
    {Transport.HEADER_PAIR, Transport.QUERY, Transport.BARE, Transport.BATCH_ENTRY}
)
ALGORITHMS = frozenset({"HS256"})
REQUIRED_CLAIMS = ("iat", "exp")
SUBJECT_CLAIMS = (("io.hull.asUser", "user"), ("io.hull.asAccount", "account"))
IDENTIFIERS = ("id", "external_id", "email")

CredentialLookup = Callable[[str], Awaitable[Credential | None]]


def _refuse(reason: str, message: str) -> Refusal:
    return Refusal(reason=reason, message=message)


def _subject(claims: dict[str, object]) -> Subject | None:
    found = [(kind, claims[name]) for name, kind in SUBJECT_CLAIMS if name in claims]
    if len(found) != 1 or not isinstance(found[0][1], dict):
        return None
    kind, identity = found[0]
    for name in IDENTIFIERS:
        value = identity.get(name)
        if isinstance(value, str) and 0 < len(value) <= 255:
            return Subject(type=kind, id=value)
    return None


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
        return _refuse(reasons.TRANSPORT_NOT_ALLOWED, "subject tokens are not accepted over this transport")
    issuer = parsed.claims.get("iss")
    connector_id = presented.client_id or (issuer if isinstance(issuer, str) else "")
    if presented.client_id and isinstance(issuer, str) and issuer != presented.client_id:
        return _refuse(reasons.TOKEN_CLAIMS_INVALID, "the token's iss is not the connector that sent it")
    record = await lookup(connector_id) if 0 < len(connector_id) <= 64 else None
    if record is None or record.kind != int(CredentialKind.CONNECTOR):
        return key_refusal("no connector has the token's connector id")
    used = verify_sealed(parsed, record, sealed_keys, now, ALGORITHMS)
    if isinstance(used, Refusal):
        return used
    refusal = state_refusal(record, now, "the token's connector")
    if refusal is not None:
        return refusal
    try:
        jwt_claims.validate(
            parsed.claims,
            now=now.timestamp(),
            leeway=leeway,
            issuer=None,
            audience=None,
            required=REQUIRED_CLAIMS,
            max_lifetime=max_lifetime,
        )
    except jwt_claims.ClaimsError as exc:
        return _refuse(exc.reason, str(exc))
    subject = _subject(parsed.claims)
    if subject is None:
        return _refuse(reasons.TOKEN_CLAIMS_INVALID, "the token must act as exactly one user or one account")
    token_id = parsed.claims.get("jti")
    return Principal(
        id=f"{subject.type}:{subject.id}",
        kind=CredentialKind.SUBJECT_JWT,
        transport=presented.transport,
        credential_id=record.id,
        organization_id=record.organization_id or "",
        subject=subject,
        permissions=SUBJECT_ACTIONS & frozenset(record.permissions),
        expires_at=datetime.fromtimestamp(float(parsed.claims["exp"]), UTC),  # type: ignore[arg-type]
        discouraged_transport=presented.transport is Transport.QUERY,
        issuer=connector_id,
        # I6: a token Watchword mints for this principal (the internal token) dies with the secret used.
        secret_version=proved_secret_version(record, used > 0),
        token_id=token_id if isinstance(token_id, str) else "",
    )
