"""Translation between protos and domain types, with the size checks every request field gets."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from watchword.api.errors import FieldError
from watchword.domain import Decision, HttpParts, Principal, Refusal, Resource, Subject
from watchword.pipeline import BareInput, CredentialInput
from watchword.v1 import auth_pb2, common_pb2

MAX_METHOD = 32
MAX_PATH = 8192
MAX_QUERY = 16384
MAX_HEADER_NAME = 256
MAX_ID = 255
MAX_ACTION = 128

_SUBJECT_TYPES = {common_pb2.Subject.TYPE_USER: "user", common_pb2.Subject.TYPE_ACCOUNT: "account"}
_SUBJECT_TYPE_VALUES = {name: value for value, name in _SUBJECT_TYPES.items()}


def bounded(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise FieldError(field, f"longer than {limit} characters")
    return value


def identifier(value: str, field: str, limit: int = MAX_ID) -> str:
    """A name or id bound for the store: bounded, and free of NUL (which PostgreSQL cannot hold)."""
    if "\x00" in value:
        raise FieldError(field, "must not contain NUL characters")
    return bounded(value, field, limit)


def required(value: str, field: str, limit: int) -> str:
    if not value.strip():
        raise FieldError(field, "is required")
    return identifier(value, field, limit)


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def from_timestamp(stamp: Timestamp, field: str) -> datetime:
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise FieldError(field, "is not a valid timestamp") from None


def credential_source(
    source: common_pb2.CredentialSource, field: str, max_token_bytes: int, max_headers: int
) -> CredentialInput:
    which = source.WhichOneof("source")
    if which == "bare":
        # An oversized bare token is refused by the extractor with a reason, not rejected here.
        return BareInput(
            token=source.bare.token,
            client_id=bounded(source.bare.client_id, f"{field}.bare.client_id", MAX_ID),
        )
    if which == "http":
        http = source.http
        if len(http.headers) + len(http.cookies) > max_headers:
            raise FieldError(f"{field}.http.headers", f"more than {max_headers} headers and cookies")
        value_limit = max_token_bytes * 2
        for index, header in enumerate(http.headers):
            bounded(header.name, f"{field}.http.headers[{index}].name", MAX_HEADER_NAME)
            bounded(header.value, f"{field}.http.headers[{index}].value", value_limit)
        for index, cookie in enumerate(http.cookies):
            bounded(cookie.name, f"{field}.http.cookies[{index}].name", MAX_HEADER_NAME)
            bounded(cookie.value, f"{field}.http.cookies[{index}].value", value_limit)
        return HttpParts(
            method=bounded(http.method, f"{field}.http.method", MAX_METHOD),
            path=bounded(http.path, f"{field}.http.path", MAX_PATH),
            headers=tuple((h.name, h.value) for h in http.headers),
            query=bounded(http.query, f"{field}.http.query", MAX_QUERY),
            cookies=tuple((c.name, c.value) for c in http.cookies),
        )
    raise FieldError(field, "set either `bare` or `http`")


def subject_from_proto(subject: common_pb2.Subject, field: str) -> Subject | None:
    if not subject.id and subject.type == common_pb2.Subject.TYPE_UNSPECIFIED:
        return None
    kind = _SUBJECT_TYPES.get(subject.type)
    if kind is None:
        raise FieldError(f"{field}.type", "must be TYPE_USER or TYPE_ACCOUNT")
    return Subject(type=kind, id=required(subject.id, f"{field}.id", MAX_ID))


def resource_from_proto(resource: auth_pb2.Resource, field: str) -> Resource:
    return Resource(
        organization_id=identifier(resource.organization_id, f"{field}.organization_id"),
        application_id=identifier(resource.application_id, f"{field}.application_id"),
        event_type=identifier(resource.event_type, f"{field}.event_type"),
        object_id=identifier(resource.object_id, f"{field}.object_id"),
        subject=subject_from_proto(resource.subject, f"{field}.subject")
        if resource.HasField("subject")
        else None,
    )


def principal_to_proto(principal: Principal) -> common_pb2.Principal:
    message = common_pb2.Principal(
        id=principal.id,
        kind=int(principal.kind),
        credential_id=principal.credential_id,
        organization_id=principal.organization_id,
        application_id=principal.application_id,
        permissions=sorted(principal.permissions),
        memberships=[
            common_pb2.OrganizationRole(organization_id=org, roles=list(roles))
            for org, roles in principal.memberships
        ],
        transport=int(principal.transport),
        discouraged_transport=principal.discouraged_transport,
        issuer=principal.issuer,
        data_provider_patterns=list(principal.data_provider_patterns),
        event_types_allowed=list(principal.event_types_allowed),
        event_types_denied=list(principal.event_types_denied),
        token_id=principal.token_id,
    )
    if principal.subject is not None:
        message.subject.CopyFrom(
            common_pb2.Subject(type=_SUBJECT_TYPE_VALUES[principal.subject.type], id=principal.subject.id)
        )
    if principal.expires_at is not None:
        message.expires_at.CopyFrom(timestamp(principal.expires_at))
    return message


def refusal_to_proto(refusal: Refusal) -> common_pb2.Refusal:
    return common_pb2.Refusal(
        reason=refusal.reason, message=refusal.message, www_authenticate=refusal.www_authenticate
    )


def decision_to_proto(decision: Decision) -> auth_pb2.Decision:
    return auth_pb2.Decision(
        allowed=decision.allowed, reason=decision.reason, rule=decision.rule, message=decision.message
    )
