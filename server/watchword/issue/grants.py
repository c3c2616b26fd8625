"""IssueToken's grants (I1-I3), shaped as RFC 6749 §5.1 answers and §5.2 errors (`issue/oauth.py`). The
token endpoint core (`issue/token_endpoint.py`) runs them for the gRPC IssueToken and `POST /oauth/token`
alike, so a token is issued by one code path whatever the transport."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from watchword.domain import (
    SUBJECT_ACTIONS,
    ClientAuthentication,
    CredentialKind,
    Principal,
    Refusal,
    Subject,
)
from watchword.issue.oauth import (
    CLIENT_REFUSED,
    INVALID_GRANT,
    INVALID_REQUEST,
    INVALID_SCOPE,
    OAuthError,
    Outcome,
    client_refused,
)
from watchword.issue.tokens import SigningKeySource, TokenSettings, lifetime, mint
from watchword.pipeline import BareInput, Pipeline

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
MAX_SCOPE_TOKENS = 256


@dataclass(frozen=True, slots=True)
class Requested:
    """What a client asks for besides its grant: RFC 6749 §3.3 scope, a lifetime in seconds (0: the
    default) and an audience (empty: the configured one)."""

    scope: str = ""
    lifetime: int = 0
    audience: str = ""


def _invalid_scope(description: str) -> OAuthError:
    return OAuthError(INVALID_SCOPE, description)


def narrow_scope(requested: str, held: frozenset[str]) -> tuple[str, ...] | OAuthError:
    """RFC 6749 §3.3: empty asks for everything held; asking for more than is held is `invalid_scope`."""
    tokens = requested.split(" ") if requested else []
    if len(tokens) > MAX_SCOPE_TOKENS or any(_SCOPE_TOKEN.fullmatch(token) is None for token in tokens):
        return _invalid_scope("scope must be space-separated action names")
    if not tokens:
        return tuple(sorted(held))
    beyond = sorted(set(tokens) - held)
    if beyond:
        return _invalid_scope(f"the scope exceeds what this credential holds: {beyond}")
    return tuple(sorted(set(tokens)))


class Grants:
    def __init__(self, pipeline: Pipeline, keys: SigningKeySource, settings: TokenSettings) -> None:
        self._pipeline = pipeline
        self._keys = keys
        self._settings = settings

    def _audience(self, requested: str) -> str | OAuthError:
        if requested and requested != self._settings.audience:
            return OAuthError(INVALID_REQUEST, "Watchword issues tokens for its configured audience only")
        return self._settings.audience

    async def _mint(
        self,
        principal: Principal,
        requested: Requested,
        held: frozenset[str],
        acting_as: Subject | None = None,
    ) -> Outcome:
        granted = narrow_scope(requested.scope, held)
        if isinstance(granted, OAuthError):
            return granted
        target = self._audience(requested.audience)
        if isinstance(target, OAuthError):
            return target
        if requested.lifetime < 0:
            return OAuthError(INVALID_REQUEST, "the requested lifetime must not be negative")
        expires_in = lifetime(self._settings, requested.lifetime)
        if principal.expires_at is not None:
            # A token never outlives the credential it was minted from.
            remaining = int((principal.expires_at - datetime.now(UTC)).total_seconds())
            expires_in = max(1, min(expires_in, remaining))
        return mint(
            await self._keys.current(),
            self._settings,
            subject=f"{acting_as.type}:{acting_as.id}" if acting_as else principal.credential_id,
            client_id=principal.credential_id,
            organization_id=principal.organization_id,
            scope=granted,
            expires_in=expires_in,
            credential_id=principal.credential_id,
            secret_version=principal.secret_version,
            acting_as=acting_as,
            audience=target,
        )

    async def api_key_exchange(self, api_key: str, requested: Requested) -> Outcome:
        """I1: an API key (C5) for a JWT carrying its organization, permissions and a reference to it."""
        principal = await self._pipeline.authenticate(BareInput(token=api_key))
        if isinstance(principal, Refusal):
            return OAuthError(INVALID_GRANT, principal.message)
        if principal.kind is not CredentialKind.API_KEY:
            return OAuthError(INVALID_GRANT, "only API keys can be exchanged")
        return await self._mint(principal, requested, principal.permissions)

    async def client_credentials(self, client: ClientAuthentication, requested: Requested) -> Outcome:
        """I2: RFC 6749 §4.4 with C9 client authentication; any failure is `invalid_client` (401)."""
        now = datetime.now(UTC)
        principal = await self._pipeline.clients.verify(client, now)
        if isinstance(principal, Refusal):
            return client_refused(principal, client)
        self._pipeline.note_use(principal, now)
        return await self._mint(principal, requested, principal.permissions)

    async def subject_token(
        self,
        connector_id: str,
        connector_secret: str,
        subject: Subject,
        requested: Requested,
    ) -> Outcome:
        """I3: a connector asks for a token acting as one user or account; S5 limits what it may do."""
        principal = await self._pipeline.authenticate(
            BareInput(token=connector_secret, client_id=connector_id)
        )
        if isinstance(principal, Refusal) or principal.kind is not CredentialKind.CONNECTOR:
            return CLIENT_REFUSED
        held = SUBJECT_ACTIONS & principal.permissions
        return await self._mint(principal, requested, held, acting_as=subject)
