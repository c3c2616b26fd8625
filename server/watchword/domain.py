"""Plain domain types shared by the extract, identify and decide steps. No gRPC, no storage."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

# S5: all a subject-scoped token (C7, or issued by I3) may ever do, on its own subject only.
SUBJECT_ACTIONS = frozenset({"track", "traits", "alias"})


class CredentialKind(enum.IntEnum):
    """Catalogue C1-C10 plus the stored-only kinds; values match the proto enum."""

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
    CLIENT_CERTIFICATE = 12  # C10


class Transport(enum.IntEnum):
    """Catalogue T1-T7; values match the proto enum."""

    BEARER = 1
    BASIC = 2
    COOKIE = 3
    HEADER_PAIR = 4
    QUERY = 5
    BARE = 6
    BATCH_ENTRY = 7
    FORM = 8
    CLIENT_CERTIFICATE = 9  # C10: mutual TLS, Envoy's source attributes, a trusted proxy's XFCC


class ClientAuthMethod(enum.IntEnum):
    """How an OAuth2 client authenticates at a token endpoint (RFC 6749 §2.3.1, RFC 7523), inbound (C9)
    and outbound (O3/O4); values match admin.proto's ClientAuthMethod and the stored integers."""

    CLIENT_SECRET_BASIC = 1
    CLIENT_SECRET_POST = 2
    CLIENT_SECRET_JWT = 3
    PRIVATE_KEY_JWT = 4

    @property
    def rfc_name(self) -> str:
        """The RFC 7591 `token_endpoint_auth_method` name, e.g. "client_secret_basic"."""
        return self.name.lower()

    @property
    def uses_assertion(self) -> bool:
        return self in (ClientAuthMethod.CLIENT_SECRET_JWT, ClientAuthMethod.PRIVATE_KEY_JWT)


@dataclass(frozen=True, slots=True)
class HttpParts:
    """The parts of an HTTP request that may carry a credential."""

    method: str = ""
    path: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    query: str = ""
    cookies: tuple[tuple[str, str], ...] = ()
    # C10: the client certificate of the connection (PEM, from Envoy's source attributes), or the bare
    # identity a proxy named without one; read only when the request carries no other credential.
    client_certificate: str = ""


@dataclass(frozen=True, slots=True)
class PresentedCredential:
    """Exactly one credential, as extracted from what arrived (not yet verified)."""

    token: str
    transport: Transport
    client_id: str = ""


@dataclass(frozen=True, slots=True)
class ClientAuthentication:
    """How an OAuth2 client authenticated at the token endpoint (C9), exactly as it arrived."""

    client_id: str = ""  # form body `client_id`
    client_secret: str = ""  # form body `client_secret` (client_secret_post)
    authorization: str = ""  # raw `Authorization` header (client_secret_basic)
    client_assertion_type: str = ""
    client_assertion: str = ""  # client_secret_jwt or private_key_jwt (RFC 7523)
    client_certificate: str = ""  # the TLS connection's client certificate, PEM (RFC 8705 §2, C10)

    @property
    def uses_certificate(self) -> bool:
        """RFC 8705 §2.1 (tls_client_auth): a certificate and none of C9's methods, which win when sent."""
        return bool(self.client_certificate) and not (
            self.authorization or self.client_secret or self.client_assertion
        )


@dataclass(frozen=True, slots=True)
class Subject:
    type: str  # "user" or "account"
    id: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, once verified: what it is and the most it may do."""

    id: str
    kind: CredentialKind
    transport: Transport
    credential_id: str = ""
    organization_id: str = ""
    application_id: str = ""
    subject: Subject | None = None
    permissions: frozenset[str] = frozenset()
    memberships: tuple[tuple[str, tuple[str, ...]], ...] = ()
    expires_at: datetime | None = None
    discouraged_transport: bool = False
    issuer: str = ""
    data_provider_patterns: tuple[str, ...] = ()
    event_types_allowed: tuple[str, ...] = ()
    event_types_denied: tuple[str, ...] = ()
    token_id: str = ""
    # C1: organizations the token claimed roles in that its issuer is not bound to (S7); those roles
    # were dropped, and a decision there says so.
    unbound_organizations: tuple[str, ...] = ()
    # Which of its credential's secrets the caller proved (`credential_state.secret_version`): a token
    # minted for this principal carries it and dies when that secret stops verifying (I6).
    secret_version: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a credential was refused: a stable reason code and a message safe to show."""

    reason: str
    message: str
    www_authenticate: str = 'Bearer realm="watchword"'
    # For the audit log only, never the caller: what `reason` deliberately does not tell (e.g. an unknown
    # key from a wrong signature).
    detail: str = ""


class FieldError(ValueError):
    """A field of what was asked for is invalid (a request's field, or a rule of the domain about it)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Resource:
    """What an action is done on; `organization_id` is filled in from the store when only the
    application is given."""

    organization_id: str = ""
    application_id: str = ""
    event_type: str = ""
    object_id: str = ""
    subject: Subject | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Allow or deny, with the reason code and the catalogue rule that decided."""

    allowed: bool
    reason: str
    rule: str
    message: str = field(default="")
