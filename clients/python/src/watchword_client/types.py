"""The client's public results and inputs: plain frozen dataclasses and enums, never protobuf messages."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field


class CredentialKind(enum.Enum):
    """The kind of credential a principal authenticated with (catalogue C1-C10)."""

    UNSPECIFIED = 0
    EXTERNAL_JWT = 1
    APPLICATION_SECRET = 2
    STATIC_TOKEN = 3
    TENANT_JWT = 4
    API_KEY = 5
    CONNECTOR = 6
    SUBJECT_JWT = 7
    WATCHWORD_TOKEN = 8
    OAUTH_CLIENT = 9
    TENANT_SIGNING_SECRET = 10
    ADMIN_TOKEN = 11
    CLIENT_CERTIFICATE = 12  # C10: a workload's X.509 client certificate


class Transport(enum.Enum):
    """How a credential reached Watchword (catalogue T1-T7)."""

    UNSPECIFIED = 0
    BEARER = 1
    BASIC = 2
    COOKIE = 3
    HEADER_PAIR = 4
    QUERY = 5
    BARE = 6
    BATCH_ENTRY = 7
    FORM = 8
    CLIENT_CERTIFICATE = 9  # C10: mutual TLS, Envoy's peer certificate, a trusted proxy's XFCC


class SubjectType(enum.Enum):
    UNSPECIFIED = 0
    USER = 1
    ACCOUNT = 2


class HealthStatus(enum.Enum):
    """grpc.health.v1 serving status of the whole server or of one service."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


@dataclass(frozen=True)
class Subject:
    """The user or account a subject-scoped credential (C7, I3) acts as."""

    type: SubjectType
    id: str


@dataclass(frozen=True)
class OrganizationRole:
    organization_id: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Principal:
    """Who is calling, once Watchword has verified the credential."""

    id: str
    kind: CredentialKind
    credential_id: str
    organization_id: str
    application_id: str
    subject: Subject | None
    permissions: tuple[str, ...]
    memberships: tuple[OrganizationRole, ...]
    expires_at: datetime.datetime | None
    transport: Transport
    discouraged_transport: bool
    issuer: str
    data_provider_patterns: tuple[str, ...]
    event_types_allowed: tuple[str, ...]
    event_types_denied: tuple[str, ...]
    token_id: str


@dataclass(frozen=True)
class Refusal:
    """Why Watchword refused a credential: an answer, not an error."""

    reason: str
    message: str
    www_authenticate: str


@dataclass(frozen=True)
class Decision:
    """An authorization decision; `allowed` is true only when a rule explicitly allowed the action."""

    allowed: bool
    reason: str
    rule: str
    message: str


@dataclass(frozen=True)
class Authorization:
    """The answer to one Authorize: the decision, plus the principal or the refusal. `decision_id` names
    this decision in Watchword's audit log (log it with your own record to join the two)."""

    decision: Decision
    principal: Principal | None
    refusal: Refusal | None
    decision_id: str = ""

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


@dataclass(frozen=True)
class HttpCredential:
    """The parts of an HTTP request that may carry a credential (T1-T5). Header names as received."""

    method: str = ""
    path: str = ""
    headers: Sequence[tuple[str, str]] = ()
    query: str = ""
    cookies: Sequence[tuple[str, str]] = ()

    @classmethod
    def bearer(cls, token: str) -> HttpCredential:
        """An `Authorization: Bearer <token>` header alone (T1)."""
        return cls(headers=(("authorization", f"Bearer {token}"),))


@dataclass(frozen=True)
class BareCredential:
    """A token with no HTTP around it (T6); `client_id` is the public half of a connector pair."""

    token: str
    client_id: str = ""

    def __repr__(self) -> str:  # never show the secret
        return f"BareCredential(token=<{len(self.token)} chars>, client_id={self.client_id!r})"


@dataclass(frozen=True)
class PeerCertificate:
    """C10: the caller itself, by the client certificate of its own TLS connection to Watchword (give the
    client `channel_credentials` with that certificate and key)."""


Credential = HttpCredential | BareCredential | PeerCertificate


@dataclass(frozen=True)
class Resource:
    """What an action is done on; which fields matter depends on the action's level."""

    organization_id: str = ""
    application_id: str = ""
    event_type: str = ""
    object_id: str = ""
    subject: Subject | None = None


@dataclass(frozen=True)
class AuthorizeEntry:
    """One entry of AuthorizeBatch (T7), each with its own credential."""

    credential: Credential
    action: str
    resource: Resource = field(default_factory=Resource)


@dataclass(frozen=True)
class ApiKeyExchange:
    """I1: exchange an API key for a short-lived Watchword token."""

    api_key: str = field(repr=False)


@dataclass(frozen=True)
class ClientCredentials:
    """I2: the OAuth2 client credentials grant; fill the fields the client's registered method uses."""

    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    authorization: str = field(default="", repr=False)
    client_assertion_type: str = ""
    client_assertion: str = field(default="", repr=False)


@dataclass(frozen=True)
class SubjectTokenGrant:
    """I3: a token acting as one subject, asked for by a connector."""

    connector_id: str
    connector_secret: str = field(repr=False)
    subject: Subject


Grant = ApiKeyExchange | ClientCredentials | SubjectTokenGrant


@dataclass(frozen=True)
class IssuedToken:
    """RFC 6749 §5.1."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    scope: str
    token_id: str


@dataclass(frozen=True)
class TokenError:
    """RFC 6749 §5.2: why no token was issued (an answer, not an RPC error)."""

    error: str
    error_description: str
    error_uri: str


@dataclass(frozen=True)
class SignedHeaders:
    """Headers an outbound request must carry, valid until `valid_until`."""

    headers: tuple[tuple[str, str], ...] = field(repr=False)
    valid_until: datetime.datetime | None

    def get(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


@dataclass(frozen=True)
class OutboundError:
    """Why SignOutbound attached nothing; `retryable` says whether the same call may succeed later."""

    reason: str
    message: str
    retryable: bool
    retry_after: datetime.timedelta | None
