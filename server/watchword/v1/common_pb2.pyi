import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CredentialKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDENTIAL_KIND_UNSPECIFIED: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_EXTERNAL_JWT: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_APPLICATION_SECRET: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_STATIC_TOKEN: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_TENANT_JWT: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_API_KEY: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_CONNECTOR: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_SUBJECT_JWT: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_WATCHWORD_TOKEN: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_OAUTH_CLIENT: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_TENANT_SIGNING_SECRET: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_ADMIN_TOKEN: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_CLIENT_CERTIFICATE: _ClassVar[CredentialKind]

class Transport(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSPORT_UNSPECIFIED: _ClassVar[Transport]
    TRANSPORT_BEARER: _ClassVar[Transport]
    TRANSPORT_BASIC: _ClassVar[Transport]
    TRANSPORT_COOKIE: _ClassVar[Transport]
    TRANSPORT_HEADER_PAIR: _ClassVar[Transport]
    TRANSPORT_QUERY: _ClassVar[Transport]
    TRANSPORT_BARE: _ClassVar[Transport]
    TRANSPORT_BATCH_ENTRY: _ClassVar[Transport]
    TRANSPORT_FORM: _ClassVar[Transport]
    TRANSPORT_CLIENT_CERTIFICATE: _ClassVar[Transport]
CREDENTIAL_KIND_UNSPECIFIED: CredentialKind
CREDENTIAL_KIND_EXTERNAL_JWT: CredentialKind
CREDENTIAL_KIND_APPLICATION_SECRET: CredentialKind
CREDENTIAL_KIND_STATIC_TOKEN: CredentialKind
CREDENTIAL_KIND_TENANT_JWT: CredentialKind
CREDENTIAL_KIND_API_KEY: CredentialKind
CREDENTIAL_KIND_CONNECTOR: CredentialKind
CREDENTIAL_KIND_SUBJECT_JWT: CredentialKind
CREDENTIAL_KIND_WATCHWORD_TOKEN: CredentialKind
CREDENTIAL_KIND_OAUTH_CLIENT: CredentialKind
CREDENTIAL_KIND_TENANT_SIGNING_SECRET: CredentialKind
CREDENTIAL_KIND_ADMIN_TOKEN: CredentialKind
CREDENTIAL_KIND_CLIENT_CERTIFICATE: CredentialKind
TRANSPORT_UNSPECIFIED: Transport
TRANSPORT_BEARER: Transport
TRANSPORT_BASIC: Transport
TRANSPORT_COOKIE: Transport
TRANSPORT_HEADER_PAIR: Transport
TRANSPORT_QUERY: Transport
TRANSPORT_BARE: Transport
TRANSPORT_BATCH_ENTRY: Transport
TRANSPORT_FORM: Transport
TRANSPORT_CLIENT_CERTIFICATE: Transport

class KeyValue(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HttpRequest(_message.Message):
    __slots__ = ("method", "path", "headers", "query", "cookies")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    COOKIES_FIELD_NUMBER: _ClassVar[int]
    method: str
    path: str
    headers: _containers.RepeatedCompositeFieldContainer[KeyValue]
    query: str
    cookies: _containers.RepeatedCompositeFieldContainer[KeyValue]
    def __init__(self, method: _Optional[str] = ..., path: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., query: _Optional[str] = ..., cookies: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ...) -> None: ...

class BareCredential(_message.Message):
    __slots__ = ("token", "client_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    client_id: str
    def __init__(self, token: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class PeerCertificate(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CredentialSource(_message.Message):
    __slots__ = ("bare", "http", "peer_certificate")
    BARE_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    PEER_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    bare: BareCredential
    http: HttpRequest
    peer_certificate: PeerCertificate
    def __init__(self, bare: _Optional[_Union[BareCredential, _Mapping]] = ..., http: _Optional[_Union[HttpRequest, _Mapping]] = ..., peer_certificate: _Optional[_Union[PeerCertificate, _Mapping]] = ...) -> None: ...

class Subject(_message.Message):
    __slots__ = ("type", "id")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[Subject.Type]
        TYPE_USER: _ClassVar[Subject.Type]
        TYPE_ACCOUNT: _ClassVar[Subject.Type]
    TYPE_UNSPECIFIED: Subject.Type
    TYPE_USER: Subject.Type
    TYPE_ACCOUNT: Subject.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    type: Subject.Type
    id: str
    def __init__(self, type: _Optional[_Union[Subject.Type, str]] = ..., id: _Optional[str] = ...) -> None: ...

class OrganizationRole(_message.Message):
    __slots__ = ("organization_id", "roles")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, organization_id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("id", "kind", "credential_id", "organization_id", "application_id", "subject", "permissions", "memberships", "expires_at", "transport", "discouraged_transport", "issuer", "data_provider_patterns", "event_types_allowed", "event_types_denied", "token_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIPS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    DISCOURAGED_TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    DATA_PROVIDER_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_DENIED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: CredentialKind
    credential_id: str
    organization_id: str
    application_id: str
    subject: Subject
    permissions: _containers.RepeatedScalarFieldContainer[str]
    memberships: _containers.RepeatedCompositeFieldContainer[OrganizationRole]
    expires_at: _timestamp_pb2.Timestamp
    transport: Transport
    discouraged_transport: bool
    issuer: str
    data_provider_patterns: _containers.RepeatedScalarFieldContainer[str]
    event_types_allowed: _containers.RepeatedScalarFieldContainer[str]
    event_types_denied: _containers.RepeatedScalarFieldContainer[str]
    token_id: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[CredentialKind, str]] = ..., credential_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., application_id: _Optional[str] = ..., subject: _Optional[_Union[Subject, _Mapping]] = ..., permissions: _Optional[_Iterable[str]] = ..., memberships: _Optional[_Iterable[_Union[OrganizationRole, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., transport: _Optional[_Union[Transport, str]] = ..., discouraged_transport: _Optional[bool] = ..., issuer: _Optional[str] = ..., data_provider_patterns: _Optional[_Iterable[str]] = ..., event_types_allowed: _Optional[_Iterable[str]] = ..., event_types_denied: _Optional[_Iterable[str]] = ..., token_id: _Optional[str] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("reason", "message", "www_authenticate")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WWW_AUTHENTICATE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    www_authenticate: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., www_authenticate: _Optional[str] = ...) -> None: ...
