"""Between the client's dataclasses and the wire messages; protobufs never leave this package."""

from __future__ import annotations

import datetime
from typing import TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from watchword_client._generated import auth_pb2, common_pb2
from watchword_client.types import (
    ApiKeyExchange,
    Authorization,
    BareCredential,
    ClientCredentials,
    Credential,
    CredentialKind,
    Decision,
    Grant,
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

_E = TypeVar("_E", CredentialKind, Transport, SubjectType)


def _pairs(values: object) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(name=name, value=value) for name, value in values]  # type: ignore[attr-defined]


def credential_to_proto(credential: Credential) -> common_pb2.CredentialSource:
    if isinstance(credential, BareCredential):
        bare = common_pb2.BareCredential(token=credential.token, client_id=credential.client_id)
        return common_pb2.CredentialSource(bare=bare)
    if isinstance(credential, HttpCredential):
        http = common_pb2.HttpRequest(
            method=credential.method,
            path=credential.path,
            headers=_pairs(credential.headers),
            query=credential.query,
            cookies=_pairs(credential.cookies),
        )
        return common_pb2.CredentialSource(http=http)
    if isinstance(credential, PeerCertificate):
        return common_pb2.CredentialSource(peer_certificate=common_pb2.PeerCertificate())
    raise TypeError(f"not a credential source: {type(credential).__name__}")


def subject_to_proto(subject: Subject | None) -> common_pb2.Subject | None:
    if subject is None:
        return None
    return common_pb2.Subject(type=subject.type.value, id=subject.id)  # type: ignore[arg-type]


def resource_to_proto(resource: Resource) -> auth_pb2.Resource:
    return auth_pb2.Resource(
        organization_id=resource.organization_id,
        application_id=resource.application_id,
        event_type=resource.event_type,
        object_id=resource.object_id,
        subject=subject_to_proto(resource.subject),
    )


def authorize_request(credential: Credential, action: str, resource: Resource) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=credential_to_proto(credential), action=action, resource=resource_to_proto(resource)
    )


def grant_to_request(
    grant: Grant, scope: str, requested_lifetime_seconds: int, audience: str
) -> auth_pb2.IssueTokenRequest:
    request = auth_pb2.IssueTokenRequest(
        scope=scope, requested_lifetime_seconds=requested_lifetime_seconds, audience=audience
    )
    if isinstance(grant, ApiKeyExchange):
        request.api_key_exchange.api_key = grant.api_key
    elif isinstance(grant, ClientCredentials):
        request.client_credentials.client.CopyFrom(
            auth_pb2.ClientAuthentication(
                client_id=grant.client_id,
                client_secret=grant.client_secret,
                authorization=grant.authorization,
                client_assertion_type=grant.client_assertion_type,
                client_assertion=grant.client_assertion,
            )
        )
    elif isinstance(grant, SubjectTokenGrant):
        request.subject_token.CopyFrom(
            auth_pb2.SubjectTokenGrant(
                connector_id=grant.connector_id,
                connector_secret=grant.connector_secret,
                subject=subject_to_proto(grant.subject),
            )
        )
    else:
        raise TypeError(f"not a grant: {type(grant).__name__}")
    return request


def _enum(kind: type[_E], value: int) -> _E:
    try:
        return kind(value)
    except ValueError:  # a newer server's value this client does not know yet
        return kind(0)


def _timestamp(message: timestamp_pb2.Timestamp) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(message.seconds + message.nanos / 1e9, tz=datetime.UTC)


def principal_from_proto(message: common_pb2.Principal) -> Principal:
    return Principal(
        id=message.id,
        kind=_enum(CredentialKind, message.kind),
        credential_id=message.credential_id,
        organization_id=message.organization_id,
        application_id=message.application_id,
        subject=(
            Subject(_enum(SubjectType, message.subject.type), message.subject.id)
            if message.HasField("subject")
            else None
        ),
        permissions=tuple(message.permissions),
        memberships=tuple(OrganizationRole(m.organization_id, tuple(m.roles)) for m in message.memberships),
        expires_at=_timestamp(message.expires_at) if message.HasField("expires_at") else None,
        transport=_enum(Transport, message.transport),
        discouraged_transport=message.discouraged_transport,
        issuer=message.issuer,
        data_provider_patterns=tuple(message.data_provider_patterns),
        event_types_allowed=tuple(message.event_types_allowed),
        event_types_denied=tuple(message.event_types_denied),
        token_id=message.token_id,
    )


def refusal_from_proto(message: common_pb2.Refusal) -> Refusal:
    return Refusal(message.reason, message.message, message.www_authenticate)


def authenticate_result(response: auth_pb2.AuthenticateResponse) -> Principal | Refusal:
    if response.WhichOneof("result") == "principal":
        return principal_from_proto(response.principal)
    if response.WhichOneof("result") == "refusal":
        return refusal_from_proto(response.refusal)
    # An answer with neither is no identity: refuse rather than guess.
    return Refusal("credential_missing", "Watchword answered without a principal", "")


def authorization_from_proto(response: auth_pb2.AuthorizeResponse) -> Authorization:
    decision = response.decision
    return Authorization(
        decision=Decision(decision.allowed, decision.reason, decision.rule, decision.message),
        principal=principal_from_proto(response.principal) if response.HasField("principal") else None,
        refusal=refusal_from_proto(response.refusal) if response.HasField("refusal") else None,
        decision_id=response.decision_id,
    )


def token_result(response: auth_pb2.IssueTokenResponse) -> IssuedToken | TokenError:
    if response.WhichOneof("result") == "token":
        token = response.token
        return IssuedToken(
            token.access_token, token.token_type, token.expires_in, token.scope, token.token_id
        )
    error = response.error
    return TokenError(error.error or "server_error", error.error_description, error.error_uri)


def _duration(message: duration_pb2.Duration) -> datetime.timedelta:
    return datetime.timedelta(seconds=message.seconds, microseconds=message.nanos // 1000)


def sign_result(response: auth_pb2.SignOutboundResponse) -> SignedHeaders | OutboundError:
    if response.WhichOneof("result") == "signed":
        signed = response.signed
        return SignedHeaders(
            headers=tuple((h.name, h.value) for h in signed.headers),
            valid_until=_timestamp(signed.valid_until) if signed.HasField("valid_until") else None,
        )
    error = response.error
    return OutboundError(
        reason=error.reason or "outbound_error",
        message=error.message,
        retryable=error.retryable,
        retry_after=_duration(error.retry_after) if error.HasField("retry_after") else None,
    )
