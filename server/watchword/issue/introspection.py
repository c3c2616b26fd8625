"""Token introspection (I7, RFC 7662) whatever the transport: `POST /oauth/introspect` (`http_api.py`) only
translates the form into a `TokenQuestion` and the answer into JSON.

An OAuth client holding `token.introspect` asks about one token (see `issue/inspection.py`). The answer
is `{"active": false}` and nothing else for anything that is not an active token of the client's own
organization; for an active one, RFC 7662 §2.2's members as they apply and what an operator needs (the
organization, the credential's kind and id), never a secret. Every call is audited and counted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from watchword.domain import CredentialKind
from watchword.identify.credential_state import proved_secret_version
from watchword.issue.inspection import INTROSPECT, Found, NotFound, TokenCheckEndpoint, TokenQuestion
from watchword.issue.oauth import TOKEN_TYPE, OAuthError
from watchword.observe.audit import KIND_LABELS
from watchword.store.models import Credential

ACTIVE, INACTIVE = "active", "inactive"
# The claims of a Watchword token an answer repeats (RFC 7662 §2.2, then Watchword's own); never
# `secret_version`, which only ties the token to its credential's secret.
TOKEN_CLAIMS = (
    "scope",
    "client_id",
    "sub",
    "exp",
    "iat",
    "nbf",
    "iss",
    "aud",
    "jti",
    "organization_id",
    "credential_id",
    "subject_type",
    "subject_id",
)

Answer = dict[str, Any]


def inactive() -> Answer:
    """RFC 7662 §2.2: the one answer for every token that is not active, whatever the reason."""
    return {"active": False}


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def issued_token_fields(found: Found) -> Answer:
    """A token Watchword issued: its verified claims."""
    assert found.claims is not None
    fields: Answer = {"active": True, "token_type": TOKEN_TYPE}
    fields.update({name: found.claims[name] for name in TOKEN_CLAIMS if name in found.claims})
    fields["credential_kind"] = KIND_LABELS[found.principal.kind]
    return fields


def _secret_lifetime(record: Credential, current: bool) -> tuple[datetime | None, datetime | None]:
    """When the presented secret was issued and when it stops verifying: the current secret since its
    creation or last rotation, until the credential expires; a previous one until its overlap ends."""
    if current:
        return record.rotated_at or record.created_at, record.expires_at
    ends = [end for end in (record.expires_at, record.previous_secret_valid_until) if end is not None]
    return None, min(ends) if ends else None


def opaque_secret_fields(found: Found, issuer: str) -> Answer:
    """An opaque secret: its stored credential, named by id (the secret itself never)."""
    record, principal = found.record, found.principal
    assert record is not None
    current = principal.secret_version == proved_secret_version(record, previous=False)
    issued_at, expires_at = _secret_lifetime(record, current)
    fields: Answer = {
        "active": True,
        "scope": " ".join(sorted(principal.permissions)),
        "client_id": record.id,
        "sub": record.id,
        "iss": issuer,
        "organization_id": principal.organization_id,
        "credential_kind": KIND_LABELS[CredentialKind(record.kind)],
        "credential_id": record.id,
    }
    if issued_at is not None:
        fields["iat"] = _seconds(issued_at)
    if expires_at is not None:
        fields["exp"] = _seconds(expires_at)
    if record.application_id:
        fields["application_id"] = record.application_id
    return fields


class IntrospectionEndpoint(TokenCheckEndpoint):
    action = "introspect_token"
    grant = INTROSPECT

    async def answer(self, question: TokenQuestion | OAuthError) -> Answer | OAuthError:
        """RFC 7662 §2.2's answer, or the RFC 6749 §5.2 error of a request that cannot have one (a bad
        request, a client that does not authenticate or lacks the grant); either way audited."""
        now = datetime.now(UTC)
        client = await self._asked(question, now)
        if isinstance(client, OAuthError):
            return client
        assert isinstance(question, TokenQuestion)  # a refused one is its own error
        found = await self._tokens.find(question.token, client.organization_id, now)
        if isinstance(found, NotFound):
            self._recorder.token_checked(self.action, client, INACTIVE, detail=found.reason)
            return inactive()
        self._recorder.token_checked(self.action, client, ACTIVE, found=found.principal)
        if found.claims is not None:
            return issued_token_fields(found)
        return opaque_secret_fields(found, self._tokens.issuer)
