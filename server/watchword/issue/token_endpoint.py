"""The token endpoint (I1-I3, C9) whatever the transport, as Authlib's `create_token_response` is behind
its framework adapters: the gRPC IssueToken (`api/auth.py`) and `POST /oauth/token` (`http_api.py`)
only translate their request into a `TokenRequest` and the `Outcome` back. Here: which grant runs (the
grants and C9 client authentication are in `issue/grants.py`), and the one audit record and decision
count of every answer.

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


class TokenEndpoint:
    """Each front door holds one, over the server's grants and recorder (it keeps no other state);
    without a recorder (unit tests) nothing is counted."""

    def __init__(self, grants: Grants, recorder: Recorder | None = None) -> None:
        self._grants = grants
        self._recorder = recorder or Recorder(None, None)

    async def issue(self, request: TokenRequest) -> Outcome:
        """The token the request's grant earns, or the RFC 6749 §5.2 error; either way audited."""
        grant = request.grant
        outcome = NO_GRANT if grant is None else await grant.run(self._grants, request.requested)
        self._record(grant, outcome)
        return outcome

    def _record(self, grant: Grant | None, outcome: Outcome) -> None:
        """The audit names the credential the request claims (its id only, and only when it has the
        shape of one), never the key, secret or assertion it carries."""
        name, kind, claimed = (
            ("", None, "") if grant is None else (grant.name, grant.kind, grant.claimed_id())
        )
        if isinstance(outcome, OAuthError):
            self._recorder.issued(name, kind, claimed, "", outcome.error)
        else:
            self._recorder.issued(name, kind, claimed, outcome.token_id, "")
