"""Translation between protos and domain types, with the size checks every request field gets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from watchword.api.errors import FieldError
from watchword.domain import Decision, HttpParts, Principal, Refusal, Resource, Subject
from watchword.issue.keyring import public_jwk
from watchword.pipeline import BareInput, CredentialInput, PeerCertificate
from watchword.store import models
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

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


def _pairs(entries: Any, field: str, name_limit: int, value_limit: int) -> tuple[tuple[str, str], ...]:
    """Name/value pairs, each bounded; the field path is only spelled out for the one that is not."""
    pairs = tuple((entry.name, entry.value) for entry in entries)
    for index, (name, value) in enumerate(pairs):
        if len(name) > name_limit:
            bounded(name, f"{field}[{index}].name", name_limit)
        if len(value) > value_limit:
            bounded(value, f"{field}[{index}].value", value_limit)
    return pairs


def organization_to_proto(row: models.Organization) -> admin_pb2.Organization:
    return admin_pb2.Organization(id=row.id, name=row.name, created_at=timestamp(row.created_at))


def application_to_proto(row: models.Application) -> admin_pb2.Application:
    return admin_pb2.Application(
        id=row.id,
        organization_id=row.organization_id,
        name=row.name,
        created_at=timestamp(row.created_at),
    )


def membership_to_proto(row: models.Membership) -> admin_pb2.Membership:
    return admin_pb2.Membership(
        organization_id=row.organization_id, user_id=row.user_id, roles=list(row.roles), issuer=row.issuer
    )


def credential_to_proto(row: models.Credential) -> admin_pb2.Credential:
    return admin_pb2.Credential(
        id=row.id,
        kind=row.kind,
        organization_id=row.organization_id or "",
        application_id=row.application_id or "",
        name=row.name,
        permissions=list(row.permissions),
        event_types_allowed=list(row.event_types_allowed),
        event_types_denied=list(row.event_types_denied),
        basic_auth_enabled=row.basic_auth_enabled,
        expires_at=timestamp(row.expires_at),
        created_at=timestamp(row.created_at),
        deactivated_at=timestamp(row.deactivated_at),
        rotated_at=timestamp(row.rotated_at),
        previous_secret_valid_until=timestamp(row.previous_secret_valid_until),
        algorithms=list(row.algorithms),
        client_auth_method=row.client_auth_method,
        public_jwk=row.public_jwk,
        secret_hint=row.secret_hint,
        service_identity=row.service_identity or "",
        last_used_at=timestamp(row.last_used_at),
        leak_reported_at=timestamp(row.leak_reported_at),
    )


def signing_key_to_proto(row: models.SigningKey) -> admin_pb2.SigningKey:
    return admin_pb2.SigningKey(
        kid=row.kid,
        algorithm=row.algorithm,
        # Public members only, whatever the stored JSON holds.
        public_jwk=json.dumps(public_jwk(row), sort_keys=True),
        created_at=timestamp(row.created_at),
        active=row.active,
        retires_at=timestamp(row.retires_at),
    )


def credential_source(
    source: common_pb2.CredentialSource, field: str, max_token_bytes: int, max_headers: int
) -> CredentialInput:
    which = source.WhichOneof("source")
    if which == "http":
        http = source.http
        headers, cookies = http.headers, http.cookies
        if len(headers) + len(cookies) > max_headers:
            raise FieldError(f"{field}.http.headers", f"more than {max_headers} headers and cookies")
        value_limit = max_token_bytes * 2
        header_pairs = _pairs(headers, f"{field}.http.headers", MAX_HEADER_NAME, value_limit)
        cookie_pairs = (
            _pairs(cookies, f"{field}.http.cookies", MAX_HEADER_NAME, value_limit) if cookies else ()
        )
        method, path, query = http.method, http.path, http.query
        if len(method) > MAX_METHOD or len(path) > MAX_PATH or len(query) > MAX_QUERY:
            bounded(method, f"{field}.http.method", MAX_METHOD)
            bounded(path, f"{field}.http.path", MAX_PATH)
            bounded(query, f"{field}.http.query", MAX_QUERY)
        return HttpParts(method=method, path=path, headers=header_pairs, query=query, cookies=cookie_pairs)
    if which == "bare":
        # An oversized bare token is refused by the extractor with a reason, not rejected here.
        client_id = source.bare.client_id
        if len(client_id) > MAX_ID:
            bounded(client_id, f"{field}.bare.client_id", MAX_ID)
        return BareInput(token=source.bare.token, client_id=client_id)
    if which == "peer_certificate":
        return PeerCertificate()  # the front door fills in its connection's certificate
    raise FieldError(field, "set one of `bare`, `http` or `peer_certificate`")


def subject_from_proto(subject: common_pb2.Subject, field: str) -> Subject | None:
    if not subject.id and subject.type == common_pb2.Subject.TYPE_UNSPECIFIED:
        return None
    kind = _SUBJECT_TYPES.get(subject.type)
    if kind is None:
        raise FieldError(f"{field}.type", "must be TYPE_USER or TYPE_ACCOUNT")
    return Subject(type=kind, id=required(subject.id, f"{field}.id", MAX_ID))


_RESOURCE_IDS = ("organization_id", "application_id", "event_type", "object_id")


def resource_from_proto(resource: auth_pb2.Resource, field: str) -> Resource:
    values = (resource.organization_id, resource.application_id, resource.event_type, resource.object_id)
    for name, value in zip(_RESOURCE_IDS, values, strict=True):
        if len(value) > MAX_ID or "\x00" in value:
            identifier(value, f"{field}.{name}")  # raises, naming the field
    subject = (
        subject_from_proto(resource.subject, f"{field}.subject") if resource.HasField("subject") else None
    )
    return Resource(*values, subject=subject)


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
    message = _DECISIONS.get(decision)
    if message is None:
        message = auth_pb2.Decision(
            allowed=decision.allowed, reason=decision.reason, rule=decision.rule, message=decision.message
        )
        if len(_DECISIONS) >= MAX_CACHED_DECISIONS:
            _DECISIONS.clear()  # bounded whatever the messages; a flood only costs building them again
        _DECISIONS[decision] = message
    return message


# Decision messages by their (immutable) Decision: the rules give the same few answers over and over.
# Shared: callers copy them into their response and never change them.
MAX_CACHED_DECISIONS = 4096
_DECISIONS: dict[Decision, auth_pb2.Decision] = {}


class PrincipalMessages:
    """`principal_to_proto`, built once per Principal object and reused for as long as that object is.

    Verified principals are kept by the identify caches (verified tokens, verified secrets) and dropped
    there when their credential changes; a changed principal is a new object, so it gets a new message.
    Entries hold their principal, so an id is never reused while its entry lives. Bounded, oldest first.
    The messages are shared: callers copy them into their response and never change them.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._entries: dict[int, tuple[Principal, common_pb2.Principal]] = {}

    def get(self, principal: Principal) -> common_pb2.Principal:
        entry = self._entries.get(id(principal))
        if entry is not None and entry[0] is principal:
            return entry[1]
        message = principal_to_proto(principal)
        entries = self._entries
        entries[id(principal)] = (principal, message)
        while len(entries) > self._max_entries:
            del entries[next(iter(entries))]
        return message
