"""What introspection (RFC 7662) and revocation (RFC 7009) share (I7): the caller, an OAuth client (C9)
holding the endpoint's grant, and what the token it sends is, for that caller.

The caller authenticates as at the token endpoint (the pipeline's `ClientAuthenticator`: the four C9
methods, one answer for every failure) and must hold `token.introspect` or `token.revoke`, catalogue
actions granted as any other permission. The token is verified exactly as Authenticate verifies it (the
pipeline with its caches and every state check: expiry, deactivation, rotation, revocation), so what is
active here is what Authenticate accepts, on every replica alike.

Covered: the tokens Watchword issues (C8, and I3's subject tokens) and the opaque bearer secrets a
resource server receives (C2, C3, C5, C6). Anything else (unknown, malformed, expired, revoked,
deactivated, another organization's, of a kind not covered) is `NotFound`: the caller learns nothing
more; the audit record alone says why, with a reason code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from watchword import reasons
from watchword.domain import ClientAuthentication, CredentialKind, Principal, Refusal
from watchword.identify.oauth_client import ClientAuthenticator
from watchword.issue.oauth import UNAUTHORIZED_CLIENT, OAuthError, client_refused
from watchword.issue.token_endpoint import ClientCredentials
from watchword.jose import jws
from watchword.observe.decisions import Recorder
from watchword.pipeline import BareInput, Pipeline
from watchword.store.models import Credential

INTROSPECT = "token.introspect"
REVOKE = "token.revoke"

# Bearer secrets a resource server receives. OAuth client secrets authenticate clients here, tenant
# signing secrets sign, admin tokens reach the admin API: none is a token a service introspects.
OPAQUE_KINDS = frozenset(
    {
        CredentialKind.APPLICATION_SECRET,
        CredentialKind.STATIC_TOKEN,
        CredentialKind.API_KEY,
        CredentialKind.CONNECTOR,
    }
)
# Principals of the tokens Watchword issues: C8, and a C8 token acting as a subject (I3), which
# Authenticate reports as a subject-scoped principal.
ISSUED_KINDS = frozenset({CredentialKind.WATCHWORD_TOKEN, CredentialKind.SUBJECT_JWT})


@dataclass(frozen=True, slots=True)
class TokenQuestion:
    """An introspection or revocation request as its transport read it: the client's authentication as
    it arrived, the token, and `token_type_hint` (RFC 7662 §2.1: a hint, it never narrows the search)."""

    client: ClientAuthentication
    token: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Found:
    """An active token of the caller's organization: its principal and either the verified claims of a
    token Watchword issued or the stored credential of an opaque secret."""

    principal: Principal
    claims: Mapping[str, object] | None = None
    record: Credential | None = None


@dataclass(frozen=True, slots=True)
class NotFound:
    """Not an active token of the caller's organization; `reason` (a reason code) is for the audit only."""

    reason: str


async def authorised_client(
    clients: ClientAuthenticator,
    client: ClientAuthentication,
    grant: str,
    now: datetime,
    offered: bool = True,
) -> Principal | OAuthError:
    """The OAuth client, when it authenticates and holds `grant`: `invalid_client` (401) when it does
    not authenticate, as at the token endpoint; `unauthorized_client` (403) without the grant, or for
    everyone when the grant is not `offered` (the catalogue no longer has the action)."""
    principal = await clients.verify(client, now)
    if isinstance(principal, Refusal):
        return client_refused(principal, client)
    if not offered or grant not in principal.permissions or not principal.organization_id:
        return OAuthError(UNAUTHORIZED_CLIENT, f"this client is not granted {grant}")
    return principal


class TokenInspector:
    """Finds what a token is for one organization, through the pipeline (no state of its own)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._issuer = pipeline.jwt.token_issuer
        self._max_bytes = pipeline.transports.max_token_bytes

    @property
    def issuer(self) -> str:
        """Watchword's token issuer (`iss` of what it issues)."""
        return self._issuer

    async def find(self, token: str, organization_id: str, now: datetime) -> Found | NotFound:
        """The token, verified as Authenticate verifies a bare token (T6), when it is active, of a kind
        covered and of `organization_id`."""
        result = await self._pipeline.authenticate(BareInput(token=token), now)
        if isinstance(result, Refusal):
            return NotFound(result.reason)
        if not result.organization_id or result.organization_id != organization_id:
            return NotFound(reasons.RESOURCE_NOT_IN_SCOPE)
        if result.kind in OPAQUE_KINDS:
            return await self._opaque(result)
        if result.kind in ISSUED_KINDS and result.issuer == self._issuer:
            # Verified above: its claims are the ones Authenticate accepted.
            return Found(result, claims=jws.parse(token, max_bytes=self._max_bytes).claims)
        return NotFound(reasons.CREDENTIAL_KIND_UNSUPPORTED)

    async def _opaque(self, principal: Principal) -> Found | NotFound:
        record = await self._pipeline.credentials.get(principal.credential_id)
        if record is None:  # deleted since it verified
            return NotFound(reasons.CREDENTIAL_UNKNOWN)
        return Found(principal, record=record)


class TokenCheckEndpoint:
    """What introspection and revocation do before the token: refuse an unreadable request or a caller
    without the grant, audited; and answer a fault. Each HTTP door holds one of each, over the server's
    pipeline and recorder (no other state); without a recorder (unit tests) nothing is counted."""

    action: ClassVar[str]  # the audit record's `action`
    grant: ClassVar[str]  # the permission the caller needs

    def __init__(self, pipeline: Pipeline, recorder: Recorder | None = None) -> None:
        self._clients = pipeline.clients
        # A catalogue without the action turns the endpoint off, whatever the clients were granted.
        self._offered = pipeline.catalogue.get(self.grant) is not None
        self._tokens = TokenInspector(pipeline)
        self._recorder = recorder or Recorder(None, None)

    async def _asked(self, question: TokenQuestion | OAuthError, now: datetime) -> Principal | OAuthError:
        """The caller, or the RFC 6749 §5.2 error to answer (audited)."""
        if isinstance(question, OAuthError):
            self._recorder.token_checked(self.action, "", question.error, refused=True)
            return question
        client = await authorised_client(self._clients, question.client, self.grant, now, self._offered)
        if isinstance(client, OAuthError):
            claimed = ClientCredentials(question.client).claimed_id()
            self._recorder.token_checked(self.action, claimed, client.reason or client.error, refused=True)
        return client

    def failed(self, fault: OAuthError) -> OAuthError:
        """A fault (the store down, a bug) the transport answers with `fault` (HTTP: 503): audited."""
        self._recorder.token_checked(self.action, "", fault.error, refused=True, fault=True)
        return fault
