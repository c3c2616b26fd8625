"""watchword_client: call Watchword from Python services.

- `WatchwordClient` / `AsyncWatchwordClient`: Authenticate, Authorize, AuthorizeBatch, IssueToken,
  SignOutbound and health, with deadlines, retries and typed results;
- `WatchwordMiddleware` (ASGI) with `Route`s: every request authorized by one Authorize call;
- `WatchwordSigner` (httpx.Auth): outbound webhooks carry what SignOutbound returns.
"""

from watchword_client.asgi import DECISION_KEY, PRINCIPAL_KEY, WatchwordMiddleware
from watchword_client.async_client import AsyncWatchwordClient
from watchword_client.client import WatchwordClient
from watchword_client.errors import (
    CallerNotAllowed,
    CallerUnauthenticated,
    InvalidRequest,
    NotFound,
    NotServed,
    OutboundSigningError,
    WatchwordDeadlineExceeded,
    WatchwordError,
    WatchwordInternalError,
    WatchwordUnavailable,
)
from watchword_client.retry import NO_RETRY, RetryPolicy
from watchword_client.routes import Route, RouteTable
from watchword_client.signer import WatchwordSigner
from watchword_client.types import (
    ApiKeyExchange,
    Authorization,
    AuthorizeEntry,
    BareCredential,
    ClientCredentials,
    Credential,
    CredentialKind,
    Decision,
    Grant,
    HealthStatus,
    HttpCredential,
    IssuedToken,
    OrganizationRole,
    OutboundError,
    PeerCertificate,
    Principal,
    Refusal,
    Resource,
    SignedHeaders,
    Subject,
    SubjectTokenGrant,
    SubjectType,
    TokenError,
    Transport,
)

__all__ = [
    "DECISION_KEY",
    "NO_RETRY",
    "PRINCIPAL_KEY",
    "ApiKeyExchange",
    "AsyncWatchwordClient",
    "Authorization",
    "AuthorizeEntry",
    "BareCredential",
    "CallerNotAllowed",
    "CallerUnauthenticated",
    "ClientCredentials",
    "Credential",
    "CredentialKind",
    "Decision",
    "Grant",
    "HealthStatus",
    "HttpCredential",
    "InvalidRequest",
    "IssuedToken",
    "NotFound",
    "NotServed",
    "OrganizationRole",
    "OutboundError",
    "OutboundSigningError",
    "PeerCertificate",
    "Principal",
    "Refusal",
    "Resource",
    "RetryPolicy",
    "Route",
    "RouteTable",
    "SignedHeaders",
    "Subject",
    "SubjectTokenGrant",
    "SubjectType",
    "TokenError",
    "Transport",
    "WatchwordClient",
    "WatchwordDeadlineExceeded",
    "WatchwordError",
    "WatchwordInternalError",
    "WatchwordMiddleware",
    "WatchwordSigner",
    "WatchwordUnavailable",
]
