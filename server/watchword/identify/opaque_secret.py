"""C2 application secrets, C3 static tokens and C5 API keys: opaque secrets verified against a hash.

The secret names its credential (see `secret_format`), so verification is one lookup by primary key and
a constant-time hash comparison. A malformed secret costs no store query. The refusal for a wrong
secret is the same as for an unknown id, so nobody learns which credential ids exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from watchword import reasons, secret_format
from watchword.domain import CredentialKind, PresentedCredential, Principal, Refusal, Transport
from watchword.store.models import Credential

_BEARER_LIKE = frozenset({Transport.BEARER, Transport.BARE, Transport.BATCH_ENTRY})
# Kinds verified here, and the transports each may arrive over (the others land with issue #3).
ACCEPTED_TRANSPORTS = {
    CredentialKind.APPLICATION_SECRET: _BEARER_LIKE,
    CredentialKind.STATIC_TOKEN: _BEARER_LIKE,
    CredentialKind.API_KEY: _BEARER_LIKE,
}

CredentialLookup = Callable[[str], Awaitable[Credential | None]]


def _refuse(reason: str, message: str) -> Refusal:
    return Refusal(reason=reason, message=message)


def _secret_matches(token: str, record: Credential, now: datetime) -> bool:
    current = secret_format.secret_matches(token, record.secret_hash)
    previous = (
        record.previous_secret_valid_until is not None
        and now < record.previous_secret_valid_until
        and secret_format.secret_matches(token, record.previous_secret_hash)
    )
    return current or previous


def principal_for(
    record: Credential, presented: PresentedCredential, application_actions: frozenset[str]
) -> Principal:
    kind = CredentialKind(record.kind)
    permissions = (
        application_actions if kind is CredentialKind.APPLICATION_SECRET else frozenset(record.permissions)
    )
    return Principal(
        id=record.id,
        kind=kind,
        transport=presented.transport,
        credential_id=record.id,
        organization_id=record.organization_id or "",
        application_id=record.application_id or "",
        permissions=permissions,
        expires_at=record.expires_at,
        event_types_allowed=tuple(record.event_types_allowed),
        event_types_denied=tuple(record.event_types_denied),
    )


async def verify(
    presented: PresentedCredential,
    lookup: CredentialLookup,
    now: datetime,
    application_actions: frozenset[str],
) -> Principal | Refusal:
    parsed = secret_format.parse(presented.token)
    if parsed is None:
        return _refuse(reasons.CREDENTIAL_MALFORMED, "the credential is not in any accepted format")
    allowed_transports = ACCEPTED_TRANSPORTS.get(parsed.kind)
    if allowed_transports is None:
        return _refuse(
            reasons.CREDENTIAL_KIND_UNSUPPORTED, "this kind of credential is not accepted for authentication"
        )
    if presented.transport not in allowed_transports:
        return _refuse(reasons.TRANSPORT_NOT_ALLOWED, "this credential is not accepted over this transport")
    record = await lookup(parsed.credential_id)
    if record is None or record.kind != parsed.kind or not _secret_matches(presented.token, record, now):
        return _refuse(reasons.CREDENTIAL_UNKNOWN, "the credential is not recognised")
    if record.deactivated_at is not None:
        return _refuse(reasons.CREDENTIAL_DEACTIVATED, "the credential has been deactivated")
    if record.expires_at is not None and record.expires_at <= now:
        return _refuse(reasons.CREDENTIAL_EXPIRED, "the credential has expired")
    return principal_for(record, presented, application_actions)
