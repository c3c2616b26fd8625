"""The token endpoint (I1-I3, C9) whatever the transport, as Authlib's `create_token_response` is behind
its framework adapters: the gRPC IssueToken (`api/auth.py`) and `POST /oauth/token` (`http_api.py`)
only translate their request into a `TokenRequest` (or a `Refused` one it could not read) and the
`Outcome` back. Here: which grant runs (the grants and C9 client authentication are in
`issue/grants.py`), and the one audit record and decision count of every answer, faults included.

A grant is one class below (its audit name, the credential kind it takes, the credential id it claims,
how it runs); a transport names the grants it offers in its own terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from watchword.domain import ClientAuthentication, CredentialKind, Subject
from watchword.issue.grants import Grants, Requested
from watchword.issue.oauth import INVALID_REQUEST, OAuthError, Outcome
from watchword.observe import decisions
from watchword.observe.decisions import Recorder


class Grant(Protocol):
    name: ClassVar[str]  # the audit record's `grant`
    kind: ClassVar[CredentialKind]  # the credential kind the grant takes

    def claimed_id(self) -> str:
        """The credential id the request names (never a secret; "" when it names none)."""
        ...

    async def run(self, grants: Grants, requested: Requested) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What a client asks the token endpoint for; `grant` None when it named none."""

    grant: Grant | None
    requested: Requested


@dataclass(frozen=True, slots=True)
class ApiKeyExchange:
    """I1: an API key (C5) for a token."""

    api_key: str
    name: ClassVar[str] = "api_key_exchange"
    kind: ClassVar[CredentialKind] = CredentialKind.API_KEY

    def claimed_id(self) -> str:
        return decisions.secret_owner(self.api_key)

    async def run(self, grants: Grants, requested: Requested) -> Outcome:
        return await grants.api_key_exchange(self.api_key, requested)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """I2: RFC 6749 §4.4, the client authenticated by C9 as it arrived (form, header or assertion)."""

    client: ClientAuthentication
    name: ClassVar[str] = "client_credentials"
    kind: ClassVar[CredentialKind] = CredentialKind.OAUTH_CLIENT

    def claimed_id(self) -> str:
        named = decisions.claimed_credential_id(self.client.client_id)
        return named or decisions.basic_username(self.client.authorization)

    async def run(self, grants: Grants, requested: Requested) -> Outcome:
        return await grants.client_credentials(self.client, requested)


@dataclass(frozen=True, slots=True)
class SubjectToken:
    """I3: a connector (C6) asks for a token acting as one subject (S5)."""

    connector_id: str
    connector_secret: str
    subject: Subject
    name: ClassVar[str] = "subject_token"
    kind: ClassVar[CredentialKind] = CredentialKind.CONNECTOR

    def claimed_id(self) -> str:
        return decisions.claimed_credential_id(self.connector_id)

    async def run(self, grants: Grants, requested: Requested) -> Outcome:
        return await grants.subject_token(self.connector_id, self.connector_secret, self.subject, requested)


GRANTS: tuple[type[Grant], ...] = (ApiKeyExchange, ClientCredentials, SubjectToken)
_NAMES = [grant.name for grant in GRANTS]
NO_GRANT = OAuthError(INVALID_REQUEST, f"name one grant: {', '.join(_NAMES[:-1])} or {_NAMES[-1]}")
# The audit's `grant` of a request that names none of GRANTS (never what the client sent instead).
UNKNOWN_GRANT = "unknown"


@dataclass(frozen=True, slots=True)
class Refused:
    """A request its transport could not read into a TokenRequest (a bad body, a repeated or missing
    parameter, an unsupported grant type: RFC 6749 §5.2), refused before any grant runs; `grant` is the
    one it names, when the transport knows it."""

    error: OAuthError
    grant: type[Grant] | None = None


# What an audit record says of a request: the grant's name, the credential kind it takes, the id claimed.
Audited = tuple[str, CredentialKind | None, str]


def _audited_as(request: TokenRequest | Refused | None) -> Audited:
    """The audit names the credential the request claims (its id only, and only when it has the shape of
    one), never the key, secret or assertion it carries."""
    if isinstance(request, TokenRequest):
        grant = request.grant
        return ("", None, "") if grant is None else (grant.name, grant.kind, grant.claimed_id())
    if request is None or request.grant is None:
        return UNKNOWN_GRANT, None, ""
    return request.grant.name, request.grant.kind, ""


class TokenEndpoint:
    """Each front door holds one, over the server's grants and recorder (it keeps no other state);
    without a recorder (unit tests) nothing is counted."""

    def __init__(self, grants: Grants, recorder: Recorder | None = None) -> None:
        self._grants = grants
        self._recorder = recorder or Recorder(None, None)

    async def issue(self, request: TokenRequest | Refused) -> Outcome:
        """The token the request's grant earns, or the RFC 6749 §5.2 error; either way audited."""
        outcome = await self._outcome(request)
        self._record(_audited_as(request), outcome)
        return outcome

    def failed(self, request: TokenRequest | Refused | None, fault: OAuthError) -> OAuthError:
        """A fault (the store down, a bug) the transport answers itself with `fault` (HTTP: 503
        `temporarily_unavailable`): audited and counted as an `error`. `request` is None when it was not
        read yet. (gRPC leaves faults to its interceptors, which record them.)"""
        self._recorder.issued(*_audited_as(request), "", fault.error, fault=True)
        return fault

    async def _outcome(self, request: TokenRequest | Refused) -> Outcome:
        if isinstance(request, Refused):
            return request.error
        grant = request.grant
        return NO_GRANT if grant is None else await grant.run(self._grants, request.requested)

    def _record(self, audited: Audited, outcome: Outcome) -> None:
        if isinstance(outcome, OAuthError):
            # The reason code where the answer names one (a refused client certificate), else the error.
            self._recorder.issued(*audited, "", outcome.reason or outcome.error)
        else:
            self._recorder.issued(*audited, outcome.token_id, "")
