import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from watchword_client._generated import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthenticateRequest(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: _common_pb2.CredentialSource
    def __init__(self, credential: _Optional[_Union[_common_pb2.CredentialSource, _Mapping]] = ...) -> None: ...

class AuthenticateResponse(_message.Message):
    __slots__ = ("principal", "refusal", "decision_id")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    principal: _common_pb2.Principal
    refusal: _common_pb2.Refusal
    decision_id: str
    def __init__(self, principal: _Optional[_Union[_common_pb2.Principal, _Mapping]] = ..., refusal: _Optional[_Union[_common_pb2.Refusal, _Mapping]] = ..., decision_id: _Optional[str] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("organization_id", "application_id", "event_type", "object_id", "subject")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    application_id: str
    event_type: str
    object_id: str
    subject: _common_pb2.Subject
    def __init__(self, organization_id: _Optional[str] = ..., application_id: _Optional[str] = ..., event_type: _Optional[str] = ..., object_id: _Optional[str] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("credential", "action", "resource")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    credential: _common_pb2.CredentialSource
    action: str
    resource: Resource
    def __init__(self, credential: _Optional[_Union[_common_pb2.CredentialSource, _Mapping]] = ..., action: _Optional[str] = ..., resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("allowed", "reason", "rule", "message")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    rule: str
    message: str
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., rule: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("decision", "principal", "refusal", "decision_id")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    principal: _common_pb2.Principal
    refusal: _common_pb2.Refusal
    decision_id: str
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., principal: _Optional[_Union[_common_pb2.Principal, _Mapping]] = ..., refusal: _Optional[_Union[_common_pb2.Refusal, _Mapping]] = ..., decision_id: _Optional[str] = ...) -> None: ...

class AuthorizeBatchRequest(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuthorizeRequest]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuthorizeRequest, _Mapping]]] = ...) -> None: ...

class AuthorizeBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AuthorizeResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[AuthorizeResponse, _Mapping]]] = ...) -> None: ...

class ApiKeyExchangeGrant(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class ClientAuthentication(_message.Message):
    __slots__ = ("client_id", "client_secret", "authorization", "client_assertion_type", "client_assertion")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ASSERTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ASSERTION_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    authorization: str
    client_assertion_type: str
    client_assertion: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., authorization: _Optional[str] = ..., client_assertion_type: _Optional[str] = ..., client_assertion: _Optional[str] = ...) -> None: ...

class ClientCredentialsGrant(_message.Message):
    __slots__ = ("client",)
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    client: ClientAuthentication
    def __init__(self, client: _Optional[_Union[ClientAuthentication, _Mapping]] = ...) -> None: ...

class SubjectTokenGrant(_message.Message):
    __slots__ = ("connector_id", "connector_secret", "subject")
    CONNECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_SECRET_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    connector_id: str
    connector_secret: str
    subject: _common_pb2.Subject
    def __init__(self, connector_id: _Optional[str] = ..., connector_secret: _Optional[str] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("api_key_exchange", "client_credentials", "subject_token", "scope", "requested_lifetime_seconds", "audience")
    API_KEY_EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_LIFETIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    api_key_exchange: ApiKeyExchangeGrant
    client_credentials: ClientCredentialsGrant
    subject_token: SubjectTokenGrant
    scope: str
    requested_lifetime_seconds: int
    audience: str
    def __init__(self, api_key_exchange: _Optional[_Union[ApiKeyExchangeGrant, _Mapping]] = ..., client_credentials: _Optional[_Union[ClientCredentialsGrant, _Mapping]] = ..., subject_token: _Optional[_Union[SubjectTokenGrant, _Mapping]] = ..., scope: _Optional[str] = ..., requested_lifetime_seconds: _Optional[int] = ..., audience: _Optional[str] = ...) -> None: ...

class TokenResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expires_in", "scope", "token_id")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expires_in: int
    scope: str
    token_id: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., scope: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class OAuthError(_message.Message):
    __slots__ = ("error", "error_description", "error_uri")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_URI_FIELD_NUMBER: _ClassVar[int]
    error: str
    error_description: str
    error_uri: str
    def __init__(self, error: _Optional[str] = ..., error_description: _Optional[str] = ..., error_uri: _Optional[str] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("token", "error")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    token: TokenResponse
    error: OAuthError
    def __init__(self, token: _Optional[_Union[TokenResponse, _Mapping]] = ..., error: _Optional[_Union[OAuthError, _Mapping]] = ...) -> None: ...

class SignOutboundRequest(_message.Message):
    __slots__ = ("outbound_credential_id", "method", "url", "body", "message_id", "previous_token_rejected")
    OUTBOUND_CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TOKEN_REJECTED_FIELD_NUMBER: _ClassVar[int]
    outbound_credential_id: str
    method: str
    url: str
    body: bytes
    message_id: str
    previous_token_rejected: bool
    def __init__(self, outbound_credential_id: _Optional[str] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., body: _Optional[bytes] = ..., message_id: _Optional[str] = ..., previous_token_rejected: _Optional[bool] = ...) -> None: ...

class SignedHeaders(_message.Message):
    __slots__ = ("headers", "valid_until")
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    headers: _containers.RepeatedCompositeFieldContainer[_common_pb2.KeyValue]
    valid_until: _timestamp_pb2.Timestamp
    def __init__(self, headers: _Optional[_Iterable[_Union[_common_pb2.KeyValue, _Mapping]]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OutboundError(_message.Message):
    __slots__ = ("reason", "message", "retryable", "retry_after")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    retryable: bool
    retry_after: _duration_pb2.Duration
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SignOutboundResponse(_message.Message):
    __slots__ = ("signed", "error")
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    signed: SignedHeaders
    error: OutboundError
    def __init__(self, signed: _Optional[_Union[SignedHeaders, _Mapping]] = ..., error: _Optional[_Union[OutboundError, _Mapping]] = ...) -> None: ...
