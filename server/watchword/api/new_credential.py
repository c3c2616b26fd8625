"""CreateCredentialRequest -> the domain's `NewCredential` (sizes and shapes checked), minted by
`identify/minting` (I4)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from watchword.api import convert
from watchword.api.errors import FieldError
from watchword.crypto.master_key import MasterKey
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind
from watchword.identify import minting
from watchword.store import models
from watchword.v1 import admin_pb2

MAX_NAME = 200
MAX_PATTERNS = 100


def _kind(value: int) -> CredentialKind:
    try:
        kind = CredentialKind(value)
    except ValueError:
        raise FieldError("kind", "must name a credential kind") from None
    return minting.mintable(kind)


def _patterns(values: Sequence[str], field: str) -> tuple[str, ...]:
    if len(values) > MAX_PATTERNS:
        raise FieldError(field, f"at most {MAX_PATTERNS} patterns")
    return tuple(
        convert.required(value, f"{field}[{index}]", convert.MAX_ID) for index, value in enumerate(values)
    )


def _expiry(request: admin_pb2.CreateCredentialRequest) -> datetime | None:
    if not request.HasField("expires_at"):
        return None
    return convert.from_timestamp(request.expires_at, "expires_at")


def new_credential(request: admin_pb2.CreateCredentialRequest) -> minting.NewCredential:
    return minting.NewCredential(
        kind=_kind(request.kind),
        name=convert.required(request.name, "name", MAX_NAME),
        organization_id=convert.identifier(request.organization_id, "organization_id"),
        application_id=convert.identifier(request.application_id, "application_id"),
        permissions=tuple(request.permissions),
        event_types_allowed=_patterns(request.event_types_allowed, "event_types_allowed"),
        event_types_denied=_patterns(request.event_types_denied, "event_types_denied"),
        basic_auth_enabled=request.basic_auth_enabled,
        algorithms=tuple(request.algorithms),
        client_auth_method=request.client_auth_method,
        public_jwk=request.public_jwk,
        expires_at=_expiry(request),
        service_identity=convert.identifier(request.service_identity, "service_identity", 1024),
    )


def build(
    request: admin_pb2.CreateCredentialRequest, catalogue: Catalogue, master_key: MasterKey
) -> tuple[models.Credential, str]:
    """The row to store and the secret to show once; FieldError names what is wrong."""
    return minting.create(new_credential(request), catalogue, master_key, datetime.now(UTC))
