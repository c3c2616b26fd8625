"""Validating a CreateCredentialRequest and minting the credential it describes (I4)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from watchword import secret_format
from watchword.api import convert
from watchword.api.errors import FieldError
from watchword.crypto.master_key import MasterKey
from watchword.decide import names
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind
from watchword.identify.oauth_client import CLIENT_SECRET_JWT, PRIVATE_KEY_ALGORITHMS, PRIVATE_KEY_JWT
from watchword.identify.sealed_keys import SEALED_KINDS, seal
from watchword.jose.jwk import KeySetError, load_jwk
from watchword.store import models
from watchword.v1 import admin_pb2, common_pb2

MAX_NAME = 200
MAX_PATTERNS = 100

MINTABLE_KINDS = frozenset(
    {
        CredentialKind.APPLICATION_SECRET,
        CredentialKind.STATIC_TOKEN,
        CredentialKind.API_KEY,
        CredentialKind.CONNECTOR,
        CredentialKind.TENANT_SIGNING_SECRET,
        CredentialKind.OAUTH_CLIENT,
        CredentialKind.ADMIN_TOKEN,
    }
)
# Kinds whose reach is their own list of actions (for tenant signing secrets: the ceiling, S4).
GRANT_KINDS = frozenset(
    {
        CredentialKind.STATIC_TOKEN,
        CredentialKind.API_KEY,
        CredentialKind.CONNECTOR,
        CredentialKind.TENANT_SIGNING_SECRET,
        CredentialKind.OAUTH_CLIENT,
    }
)
EVENT_FILTER_KINDS = frozenset({CredentialKind.STATIC_TOKEN, CredentialKind.API_KEY})
TENANT_ALGORITHMS = ("HS256",)


def _patterns(values: Sequence[str], field: str) -> list[str]:
    if len(values) > MAX_PATTERNS:
        raise FieldError(field, f"at most {MAX_PATTERNS} patterns")
    return [_pattern(value, f"{field}[{index}]") for index, value in enumerate(values)]


def _pattern(value: str, field: str) -> str:
    """S3: an event pattern is written in the event types' canonical form, which is what it matches."""
    convert.required(value, field, convert.MAX_ID)
    problem = names.event_pattern_problem(value)
    if problem:
        raise FieldError(field, problem)
    return value


def _kind(value: int) -> CredentialKind:
    try:
        kind = CredentialKind(value)
    except ValueError:
        raise FieldError("kind", "must name a credential kind") from None
    if kind not in MINTABLE_KINDS:
        raise FieldError("kind", f"{common_pb2.CredentialKind.Name(kind)} cannot be created by this version")
    return kind


def _algorithms(kind: CredentialKind, requested: Sequence[str]) -> list[str]:
    if kind is not CredentialKind.TENANT_SIGNING_SECRET:
        if requested:
            raise FieldError("algorithms", "only tenant signing secrets have algorithms")
        return []
    unsupported = sorted(set(requested) - set(TENANT_ALGORITHMS))
    if unsupported:
        raise FieldError("algorithms", f"unsupported for tenant signing secrets: {unsupported}; use HS256")
    return sorted(set(requested)) or list(TENANT_ALGORITHMS)


def _client_method(kind: CredentialKind, method: int, public_jwk: str) -> tuple[int, str]:
    """C9: the one client authentication method, and for private_key_jwt the client's public key."""
    if kind is not CredentialKind.OAUTH_CLIENT:
        if method or public_jwk:
            raise FieldError("client_auth_method", "only OAuth clients have an authentication method")
        return 0, ""
    if method not in (1, 2, CLIENT_SECRET_JWT, PRIVATE_KEY_JWT):
        raise FieldError("client_auth_method", "choose the client's one authentication method")
    if method != PRIVATE_KEY_JWT:
        if public_jwk:
            raise FieldError("public_jwk", "only private_key_jwt clients register a public key")
        return method, ""
    try:
        document = json.loads(public_jwk)
        key = load_jwk(document) if isinstance(document, dict) else None
    except (ValueError, KeySetError) as exc:
        raise FieldError("public_jwk", f"not a usable public JWK: {exc}") from None
    if key is None or key.is_secret or key.algorithm not in PRIVATE_KEY_ALGORITHMS:
        raise FieldError("public_jwk", f"must be a public key for one of {sorted(PRIVATE_KEY_ALGORITHMS)}")
    if any(member in document for member in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise FieldError("public_jwk", "must not contain private key material")
    return method, json.dumps(document, sort_keys=True)


def build(
    request: admin_pb2.CreateCredentialRequest, catalogue: Catalogue, master_key: MasterKey
) -> tuple[models.Credential, str]:
    """The row to store and the secret to show once; FieldError names what is wrong."""
    kind = _kind(request.kind)
    name = convert.required(request.name, "name", MAX_NAME)
    organization_id: str | None = None
    if kind is CredentialKind.ADMIN_TOKEN:
        if request.organization_id:
            raise FieldError("organization_id", "admin tokens belong to no organization")
    else:
        organization_id = convert.required(request.organization_id, "organization_id", convert.MAX_ID)
    application_id: str | None = None
    if kind is CredentialKind.APPLICATION_SECRET:
        application_id = convert.required(request.application_id, "application_id", convert.MAX_ID)
    elif request.application_id:
        raise FieldError("application_id", "only application secrets are bound to an application")
    if kind in GRANT_KINDS:
        unknown = sorted(set(request.permissions) - set(catalogue.actions))
        if unknown:
            raise FieldError("permissions", f"unknown action(s) {unknown}")
    elif request.permissions:
        raise FieldError("permissions", "this kind of credential carries no permissions")
    if kind not in EVENT_FILTER_KINDS and (request.event_types_allowed or request.event_types_denied):
        raise FieldError("event_types_allowed", "only API keys and static tokens carry event patterns")
    if request.basic_auth_enabled and kind is not CredentialKind.API_KEY:
        raise FieldError("basic_auth_enabled", "only API keys may be used over HTTP Basic")
    method, public_jwk = _client_method(kind, request.client_auth_method, request.public_jwk)
    expires_at = None
    if request.HasField("expires_at"):
        expires_at = convert.from_timestamp(request.expires_at, "expires_at")
        if expires_at <= datetime.now(UTC):
            raise FieldError("expires_at", "must be in the future")
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(kind, credential_id)
    sealed = kind in SEALED_KINDS or method == CLIENT_SECRET_JWT
    row = models.Credential(
        id=credential_id,
        kind=int(kind),
        organization_id=organization_id,
        application_id=application_id,
        name=name,
        secret_hash=secret_format.hash_secret(secret),
        secret_hint=secret_format.hint(secret),
        sealed_secret=seal(master_key, credential_id, secret) if sealed else None,
        permissions=sorted(set(request.permissions)),
        event_types_allowed=_patterns(request.event_types_allowed, "event_types_allowed"),
        event_types_denied=_patterns(request.event_types_denied, "event_types_denied"),
        basic_auth_enabled=request.basic_auth_enabled,
        algorithms=_algorithms(kind, request.algorithms),
        client_auth_method=method,
        public_jwk=public_jwk,
        expires_at=expires_at,
    )
    # A private_key_jwt client authenticates with its key only: the minted secret is never shown (its
    # hash fills the column and matches nothing anyone holds).
    return row, "" if method == PRIVATE_KEY_JWT else secret
