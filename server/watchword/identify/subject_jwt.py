"""C7 subject-scoped JWTs (Hull): a token acting as one user or one account, signed (HS256) with the
connector's secret and presented in the connector token header, with the connector id beside it.

In a batch (T7) an entry may carry the token alone; the connector is then the token's `iss`, which is
safe because the signature is checked with that connector's own secret. The subject comes from
Hull's `io.hull.asUser` / `io.hull.asAccount` claims (an object with `id`, `external_id` or `email`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from watchword import reasons
from watchword.domain import SUBJECT_ACTIONS, CredentialKind, Principal, Refusal, Subject, Transport
from watchword.identify.credential_state import proved_secret_version
from watchword.identify.sealed_keys import SealedSecretJwtVerifier, key_refusal
from watchword.identify.verifier import PresentedJwt, refuse
from watchword.jose import jws
from watchword.store.models import Credential

# Transports that carry a connector id beside the token: a JWT there is subject-scoped.
PAIRED_TRANSPORTS = frozenset({Transport.HEADER_PAIR, Transport.QUERY})
ALGORITHMS = frozenset({"HS256"})
SUBJECT_CLAIMS = (("io.hull.asUser", "user"), ("io.hull.asAccount", "account"))
IDENTIFIERS = ("id", "external_id", "email")


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


class SubjectJwtVerifier(SealedSecretJwtVerifier):
    """C7: any JWT sent beside a connector id (T4, T5, or a bare token with `client_id`)."""

    kind = CredentialKind.SUBJECT_JWT

    def recognises(self, jwt: PresentedJwt) -> bool:
        return jwt.presented.transport in PAIRED_TRANSPORTS or bool(jwt.presented.client_id)

    async def verify(self, jwt: PresentedJwt, now: datetime) -> Principal | Refusal:
        parsed, presented = jwt.parsed, jwt.presented
        issuer = parsed.claims.get("iss")
        connector_id = presented.client_id or (issuer if isinstance(issuer, str) else "")
        if presented.client_id and isinstance(issuer, str) and issuer != presented.client_id:
            return refuse(reasons.TOKEN_CLAIMS_INVALID, "the token's iss is not the connector that sent it")
        record = await self._lookup(connector_id) if 0 < len(connector_id) <= 64 else None
        if record is None or record.kind != int(CredentialKind.CONNECTOR):
            return key_refusal("no connector has the token's connector id")
        used = self._signed_and_valid(parsed, record, now, ALGORITHMS, "the token's connector")
        if isinstance(used, Refusal):
            return used
        subject = _subject(parsed.claims)
        if subject is None:
            message = "the token must act as exactly one user or one account"
            return refuse(reasons.TOKEN_CLAIMS_INVALID, message)
        return _principal(parsed, presented.transport, record, connector_id, subject, used)


def _principal(
    parsed: jws.ParsedJws,
    transport: Transport,
    record: Credential,
    connector_id: str,
    subject: Subject,
    used: int,
) -> Principal:
    token_id = parsed.claims.get("jti")
    return Principal(
        id=f"{subject.type}:{subject.id}",
        kind=CredentialKind.SUBJECT_JWT,
        transport=transport,
        credential_id=record.id,
        organization_id=record.organization_id or "",
        subject=subject,
        permissions=SUBJECT_ACTIONS & frozenset(record.permissions),
        expires_at=datetime.fromtimestamp(float(parsed.claims["exp"]), UTC),  # type: ignore[arg-type]
        discouraged_transport=transport is Transport.QUERY,
        issuer=connector_id,
        # I6: a token Watchword mints for this principal (the internal token) dies with the secret used.
        secret_version=proved_secret_version(record, used > 0),
        token_id=token_id if isinstance(token_id, str) else "",
    )
