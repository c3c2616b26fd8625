import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from watchword.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientAuthMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLIENT_AUTH_METHOD_UNSPECIFIED: _ClassVar[ClientAuthMethod]
    CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC: _ClassVar[ClientAuthMethod]
    CLIENT_AUTH_METHOD_CLIENT_SECRET_POST: _ClassVar[ClientAuthMethod]
    CLIENT_AUTH_METHOD_CLIENT_SECRET_JWT: _ClassVar[ClientAuthMethod]
    CLIENT_AUTH_METHOD_PRIVATE_KEY_JWT: _ClassVar[ClientAuthMethod]

class OutboundScheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTBOUND_SCHEME_UNSPECIFIED: _ClassVar[OutboundScheme]
    OUTBOUND_SCHEME_NONE: _ClassVar[OutboundScheme]
    OUTBOUND_SCHEME_BEARER: _ClassVar[OutboundScheme]
    OUTBOUND_SCHEME_BASIC: _ClassVar[OutboundScheme]
    OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS: _ClassVar[OutboundScheme]
CLIENT_AUTH_METHOD_UNSPECIFIED: ClientAuthMethod
CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC: ClientAuthMethod
CLIENT_AUTH_METHOD_CLIENT_SECRET_POST: ClientAuthMethod
CLIENT_AUTH_METHOD_CLIENT_SECRET_JWT: ClientAuthMethod
CLIENT_AUTH_METHOD_PRIVATE_KEY_JWT: ClientAuthMethod
OUTBOUND_SCHEME_UNSPECIFIED: OutboundScheme
OUTBOUND_SCHEME_NONE: OutboundScheme
OUTBOUND_SCHEME_BEARER: OutboundScheme
OUTBOUND_SCHEME_BASIC: OutboundScheme
OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS: OutboundScheme

class Organization(_message.Message):
    __slots__ = ("id", "name", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateOrganizationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetOrganizationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListOrganizationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrganizationsResponse(_message.Message):
    __slots__ = ("organizations", "next_page_token")
    ORGANIZATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    organizations: _containers.RepeatedCompositeFieldContainer[Organization]
    next_page_token: str
    def __init__(self, organizations: _Optional[_Iterable[_Union[Organization, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteOrganizationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteOrganizationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Application(_message.Message):
    __slots__ = ("id", "organization_id", "name", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    name: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateApplicationRequest(_message.Message):
    __slots__ = ("organization_id", "name")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    name: str
    def __init__(self, organization_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetApplicationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListApplicationsRequest(_message.Message):
    __slots__ = ("organization_id", "page_size", "page_token")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    page_size: int
    page_token: str
    def __init__(self, organization_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListApplicationsResponse(_message.Message):
    __slots__ = ("applications", "next_page_token")
    APPLICATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    applications: _containers.RepeatedCompositeFieldContainer[Application]
    next_page_token: str
    def __init__(self, applications: _Optional[_Iterable[_Union[Application, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteApplicationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteApplicationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Membership(_message.Message):
    __slots__ = ("organization_id", "user_id", "roles", "issuer")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    user_id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    issuer: str
    def __init__(self, organization_id: _Optional[str] = ..., user_id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., issuer: _Optional[str] = ...) -> None: ...

class SetMembershipRequest(_message.Message):
    __slots__ = ("membership",)
    MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    membership: Membership
    def __init__(self, membership: _Optional[_Union[Membership, _Mapping]] = ...) -> None: ...

class ListMembershipsRequest(_message.Message):
    __slots__ = ("organization_id", "page_size", "page_token", "issuer")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    page_size: int
    page_token: str
    issuer: str
    def __init__(self, organization_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., issuer: _Optional[str] = ...) -> None: ...

class ListMembershipsResponse(_message.Message):
    __slots__ = ("memberships", "next_page_token")
    MEMBERSHIPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    memberships: _containers.RepeatedCompositeFieldContainer[Membership]
    next_page_token: str
    def __init__(self, memberships: _Optional[_Iterable[_Union[Membership, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteMembershipRequest(_message.Message):
    __slots__ = ("organization_id", "user_id", "issuer")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    user_id: str
    issuer: str
    def __init__(self, organization_id: _Optional[str] = ..., user_id: _Optional[str] = ..., issuer: _Optional[str] = ...) -> None: ...

class DeleteMembershipResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Credential(_message.Message):
    __slots__ = ("id", "kind", "organization_id", "application_id", "name", "permissions", "event_types_allowed", "event_types_denied", "basic_auth_enabled", "expires_at", "created_at", "deactivated_at", "rotated_at", "previous_secret_valid_until", "algorithms", "client_auth_method", "public_jwk", "secret_hint", "service_identity", "last_used_at", "uses_last_30_days", "daily_usage", "leak_reported_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_DENIED_FIELD_NUMBER: _ClassVar[int]
    BASIC_AUTH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECRET_VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_AUTH_METHOD_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_JWK_FIELD_NUMBER: _ClassVar[int]
    SECRET_HINT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    USES_LAST_30_DAYS_FIELD_NUMBER: _ClassVar[int]
    DAILY_USAGE_FIELD_NUMBER: _ClassVar[int]
    LEAK_REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: _common_pb2.CredentialKind
    organization_id: str
    application_id: str
    name: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    event_types_allowed: _containers.RepeatedScalarFieldContainer[str]
    event_types_denied: _containers.RepeatedScalarFieldContainer[str]
    basic_auth_enabled: bool
    expires_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    deactivated_at: _timestamp_pb2.Timestamp
    rotated_at: _timestamp_pb2.Timestamp
    previous_secret_valid_until: _timestamp_pb2.Timestamp
    algorithms: _containers.RepeatedScalarFieldContainer[str]
    client_auth_method: ClientAuthMethod
    public_jwk: str
    secret_hint: str
    service_identity: str
    last_used_at: _timestamp_pb2.Timestamp
    uses_last_30_days: int
    daily_usage: _containers.RepeatedCompositeFieldContainer[DailyUsage]
    leak_reported_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.CredentialKind, str]] = ..., organization_id: _Optional[str] = ..., application_id: _Optional[str] = ..., name: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., event_types_allowed: _Optional[_Iterable[str]] = ..., event_types_denied: _Optional[_Iterable[str]] = ..., basic_auth_enabled: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deactivated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_secret_valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., algorithms: _Optional[_Iterable[str]] = ..., client_auth_method: _Optional[_Union[ClientAuthMethod, str]] = ..., public_jwk: _Optional[str] = ..., secret_hint: _Optional[str] = ..., service_identity: _Optional[str] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uses_last_30_days: _Optional[int] = ..., daily_usage: _Optional[_Iterable[_Union[DailyUsage, _Mapping]]] = ..., leak_reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DailyUsage(_message.Message):
    __slots__ = ("day", "uses")
    DAY_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    day: str
    uses: int
    def __init__(self, day: _Optional[str] = ..., uses: _Optional[int] = ...) -> None: ...

class CreateCredentialRequest(_message.Message):
    __slots__ = ("kind", "organization_id", "application_id", "name", "permissions", "event_types_allowed", "event_types_denied", "basic_auth_enabled", "expires_at", "algorithms", "client_auth_method", "public_jwk", "service_identity")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_DENIED_FIELD_NUMBER: _ClassVar[int]
    BASIC_AUTH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_AUTH_METHOD_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_JWK_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    kind: _common_pb2.CredentialKind
    organization_id: str
    application_id: str
    name: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    event_types_allowed: _containers.RepeatedScalarFieldContainer[str]
    event_types_denied: _containers.RepeatedScalarFieldContainer[str]
    basic_auth_enabled: bool
    expires_at: _timestamp_pb2.Timestamp
    algorithms: _containers.RepeatedScalarFieldContainer[str]
    client_auth_method: ClientAuthMethod
    public_jwk: str
    service_identity: str
    def __init__(self, kind: _Optional[_Union[_common_pb2.CredentialKind, str]] = ..., organization_id: _Optional[str] = ..., application_id: _Optional[str] = ..., name: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., event_types_allowed: _Optional[_Iterable[str]] = ..., event_types_denied: _Optional[_Iterable[str]] = ..., basic_auth_enabled: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., algorithms: _Optional[_Iterable[str]] = ..., client_auth_method: _Optional[_Union[ClientAuthMethod, str]] = ..., public_jwk: _Optional[str] = ..., service_identity: _Optional[str] = ...) -> None: ...

class CreateCredentialResponse(_message.Message):
    __slots__ = ("credential", "secret")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    secret: str
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class GetCredentialRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListCredentialsRequest(_message.Message):
    __slots__ = ("organization_id", "kind", "application_id", "page_size", "page_token", "unused_for_days")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNUSED_FOR_DAYS_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    kind: _common_pb2.CredentialKind
    application_id: str
    page_size: int
    page_token: str
    unused_for_days: int
    def __init__(self, organization_id: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.CredentialKind, str]] = ..., application_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., unused_for_days: _Optional[int] = ...) -> None: ...

class ListCredentialsResponse(_message.Message):
    __slots__ = ("credentials", "next_page_token")
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[Credential]
    next_page_token: str
    def __init__(self, credentials: _Optional[_Iterable[_Union[Credential, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeactivateCredentialRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteCredentialRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteCredentialResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateCredentialRequest(_message.Message):
    __slots__ = ("id", "overlap_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    overlap_seconds: int
    def __init__(self, id: _Optional[str] = ..., overlap_seconds: _Optional[int] = ...) -> None: ...

class OutboundCredential(_message.Message):
    __slots__ = ("id", "organization_id", "name", "scheme", "username", "token_url", "client_id", "client_auth_method", "assertion_audience", "scope", "extra_form_fields", "sign_payload", "public_jwk", "assertion_algorithm", "created_at", "deactivated_at", "rotated_at", "previous_secret_valid_until")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_URL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_AUTH_METHOD_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FORM_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SIGN_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_JWK_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECRET_VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    name: str
    scheme: OutboundScheme
    username: str
    token_url: str
    client_id: str
    client_auth_method: ClientAuthMethod
    assertion_audience: str
    scope: str
    extra_form_fields: _containers.RepeatedCompositeFieldContainer[_common_pb2.KeyValue]
    sign_payload: bool
    public_jwk: str
    assertion_algorithm: str
    created_at: _timestamp_pb2.Timestamp
    deactivated_at: _timestamp_pb2.Timestamp
    rotated_at: _timestamp_pb2.Timestamp
    previous_secret_valid_until: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., name: _Optional[str] = ..., scheme: _Optional[_Union[OutboundScheme, str]] = ..., username: _Optional[str] = ..., token_url: _Optional[str] = ..., client_id: _Optional[str] = ..., client_auth_method: _Optional[_Union[ClientAuthMethod, str]] = ..., assertion_audience: _Optional[str] = ..., scope: _Optional[str] = ..., extra_form_fields: _Optional[_Iterable[_Union[_common_pb2.KeyValue, _Mapping]]] = ..., sign_payload: _Optional[bool] = ..., public_jwk: _Optional[str] = ..., assertion_algorithm: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deactivated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_secret_valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OutboundSecrets(_message.Message):
    __slots__ = ("bearer_token", "password", "client_secret", "payload_signing_secret")
    BEARER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    bearer_token: str
    password: str
    client_secret: str
    payload_signing_secret: str
    def __init__(self, bearer_token: _Optional[str] = ..., password: _Optional[str] = ..., client_secret: _Optional[str] = ..., payload_signing_secret: _Optional[str] = ...) -> None: ...

class CreateOutboundCredentialRequest(_message.Message):
    __slots__ = ("credential", "secrets")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    credential: OutboundCredential
    secrets: OutboundSecrets
    def __init__(self, credential: _Optional[_Union[OutboundCredential, _Mapping]] = ..., secrets: _Optional[_Union[OutboundSecrets, _Mapping]] = ...) -> None: ...

class CreateOutboundCredentialResponse(_message.Message):
    __slots__ = ("credential", "payload_signing_secret")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    credential: OutboundCredential
    payload_signing_secret: str
    def __init__(self, credential: _Optional[_Union[OutboundCredential, _Mapping]] = ..., payload_signing_secret: _Optional[str] = ...) -> None: ...

class GetOutboundCredentialRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListOutboundCredentialsRequest(_message.Message):
    __slots__ = ("organization_id", "page_size", "page_token")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    page_size: int
    page_token: str
    def __init__(self, organization_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOutboundCredentialsResponse(_message.Message):
    __slots__ = ("credentials", "next_page_token")
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[OutboundCredential]
    next_page_token: str
    def __init__(self, credentials: _Optional[_Iterable[_Union[OutboundCredential, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeactivateOutboundCredentialRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteOutboundCredentialRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteOutboundCredentialResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateOutboundCredentialRequest(_message.Message):
    __slots__ = ("id", "secrets", "regenerate_payload_signing_secret", "overlap_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REGENERATE_PAYLOAD_SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    secrets: OutboundSecrets
    regenerate_payload_signing_secret: bool
    overlap_seconds: int
    def __init__(self, id: _Optional[str] = ..., secrets: _Optional[_Union[OutboundSecrets, _Mapping]] = ..., regenerate_payload_signing_secret: _Optional[bool] = ..., overlap_seconds: _Optional[int] = ...) -> None: ...

class SigningKey(_message.Message):
    __slots__ = ("kid", "algorithm", "public_jwk", "created_at", "active", "retires_at")
    KID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_JWK_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    RETIRES_AT_FIELD_NUMBER: _ClassVar[int]
    kid: str
    algorithm: str
    public_jwk: str
    created_at: _timestamp_pb2.Timestamp
    active: bool
    retires_at: _timestamp_pb2.Timestamp
    def __init__(self, kid: _Optional[str] = ..., algorithm: _Optional[str] = ..., public_jwk: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active: _Optional[bool] = ..., retires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSigningKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSigningKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[SigningKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[SigningKey, _Mapping]]] = ...) -> None: ...

class RotateSigningKeyRequest(_message.Message):
    __slots__ = ("algorithm",)
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    algorithm: str
    def __init__(self, algorithm: _Optional[str] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id", "expires_at")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
