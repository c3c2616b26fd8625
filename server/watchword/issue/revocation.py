"""Token revocation (I7, RFC 7009) whatever the transport: `POST /oauth/revoke` (`http_api.py`) only
translates the form into a `TokenQuestion` and the outcome into an HTTP answer.

An OAuth client holding `token.revoke` sends one token of its own organization (see
`issue/inspection.py`): a token Watchword issued is revoked by its `jti`, as the admin API's RevokeToken
does; an opaque secret's credential is deactivated, as DeactivateCredential does, which also ends every
token minted from it (I6). Both are the store's own writes, so the change feed drops the caches of every
replica and worker. Anything else that is not an active token of the caller's organization is answered
as done (RFC 7009 §2.2: an invalid token is no error), except a token of a kind this endpoint never
revokes, recognisable by its shape alone: `unsupported_token_type` (§2.2.1). Every call is audited and
counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watchword import secret_format
from watchword.domain import Principal
from watchword.issue.inspection import (
    OPAQUE_KINDS,
    REVOKE,
    Found,
    NotFound,
    TokenCheckEndpoint,
    TokenQuestion,
)
from watchword.issue.oauth import UNSUPPORTED_TOKEN_TYPE, OAuthError
from watchword.jose import jws
from watchword.observe.decisions import Recorder
from watchword.pipeline import Pipeline
from watchword.store.repository import NotFoundError

REVOKED, DEACTIVATED, NOT_FOUND = "revoked", "deactivated", "not_found"
UNSUPPORTED = OAuthError(
    UNSUPPORTED_TOKEN_TYPE,
    "only tokens Watchword issues and the secrets of application secrets, static tokens, API keys and "
    "connectors are revoked here",
)


def unsupported_by_shape(token: str, issuer: str, max_bytes: int) -> bool:
    """Whether the token is, by its shape alone (no signature or secret checked, nothing the caller
    cannot see), of a kind this endpoint never revokes: a Watchword secret of another kind (an OAuth
    client secret, a tenant signing secret, an admin token), or a JWT another issuer signed."""
    parsed = secret_format.parse(token)
    if parsed is not None:
        return parsed.kind not in OPAQUE_KINDS
    if token.count(".") != 2:
        return False
    try:
        claimed = jws.parse(token, max_bytes=max_bytes).claims.get("iss")
    except jws.JwsError:
        return False  # not a token at all: an invalid one, answered as done
    return claimed != issuer


class RevocationEndpoint(TokenCheckEndpoint):
    action = "revoke_token"
    grant = REVOKE

    def __init__(self, pipeline: Pipeline, recorder: Recorder | None = None) -> None:
        super().__init__(pipeline, recorder)
        self._store = pipeline.store
        self._leeway = timedelta(seconds=pipeline.jwt.leeway_seconds)
        self._max_bytes = pipeline.transports.max_token_bytes

    async def answer(self, question: TokenQuestion | OAuthError) -> OAuthError | None:
        """None when done (RFC 7009 §2.2: 200, whether there was anything to revoke or not), or the
        RFC 6749 §5.2 / RFC 7009 §2.2.1 error; either way audited."""
        now = datetime.now(UTC)
        client = await self._asked(question, now)
        if isinstance(client, OAuthError):
            return client
        assert isinstance(question, TokenQuestion)  # a refused one is its own error
        if unsupported_by_shape(question.token, self._tokens.issuer, self._max_bytes):
            self._recorder.token_checked(self.action, client, UNSUPPORTED.error, refused=True)
            return UNSUPPORTED
        found = await self._tokens.find(question.token, client.organization_id, now)
        if isinstance(found, NotFound):
            self._recorder.token_checked(self.action, client, NOT_FOUND, detail=found.reason)
            return None
        self._recorder.token_checked(self.action, client, await self._revoke(found), found=found.principal)
        return None

    async def _revoke(self, found: Found) -> str:
        if found.claims is not None:
            await self._revoke_issued(found.principal)
            return REVOKED
        assert found.record is not None
        try:
            await self._store.deactivate_credential(found.record.id)
        except NotFoundError:
            return NOT_FOUND  # deleted meanwhile: nothing left to revoke
        return DEACTIVATED

    async def _revoke_issued(self, principal: Principal) -> None:
        """By `jti`, kept until the token could no longer verify anyway (its `exp` and the leeway)."""
        assert principal.expires_at is not None
        await self._store.revoke_token(principal.token_id, principal.expires_at + self._leeway)
