"""Minting credentials (I4): the row to store for a new credential with the secret to show once, and a
fresh secret for a rotation.

What each kind may carry (an application, permissions, event patterns, Basic, algorithms, a client
authentication method) is checked against its row in the kinds table; a secret has `secret_format`'s form,
is stored as a hash and, for a kind whose secret Watchword also verifies HMACs with, sealed under the
master key. The api layer only translates the request (`api/new_credential.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchword import secret_format
from watchword.crypto.master_key import MasterKey
from watchword.decide import names
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind, FieldError
from watchword.identify import client_certificate, kinds
from watchword.identify.oauth_client import CLIENT_SECRET_JWT, PRIVATE_KEY_ALGORITHMS, PRIVATE_KEY_JWT
from watchword.identify.sealed_keys import sealing_purpose
from watchword.jose.jwk import KeySetError, load_jwk
from watchword.store import models

TENANT_ALGORITHMS = ("HS256",)
# admin.proto's ClientAuthMethod: 1 client_secret_basic, 2 client_secret_post, then the assertion methods.
CLIENT_AUTH_METHODS = (1, 2, CLIENT_SECRET_JWT, PRIVATE_KEY_JWT)
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@dataclass(frozen=True, slots=True)
class NewCredential:
    """What CreateCredential asks for, translated from the request (sizes checked, not yet the rules)."""

    kind: CredentialKind
    name: str
    organization_id: str = ""
    application_id: str = ""
    permissions: tuple[str, ...] = ()
    event_types_allowed: tuple[str, ...] = ()
    event_types_denied: tuple[str, ...] = ()
    basic_auth_enabled: bool = False
    algorithms: tuple[str, ...] = ()
    client_auth_method: int = 0
    public_jwk: str = ""
    expires_at: datetime | None = None
    service_identity: str = ""  # C10: the SPIFFE id or subject name it is found by


@dataclass(frozen=True, slots=True)
class MintedSecret:
    value: str  # shown once, never stored
    hash: str
    sealed: bytes | None  # for the kinds whose secret is also an HMAC key


def mintable(kind: CredentialKind) -> CredentialKind:
    """`kind`, when CreateCredential makes credentials of it (its row in the kinds table says so)."""
    if kind not in kinds.MINTABLE:
        raise FieldError("kind", f"{kind.name} cannot be created by this version")
    return kind


def is_sealed(kind: CredentialKind, client_auth_method: int) -> bool:
    """Whether Watchword must be able to use the secret itself (C4/C7 HMAC keys, client_secret_jwt)."""
    return kind in kinds.SEALED or client_auth_method == CLIENT_SECRET_JWT


def seal(master_key: MasterKey, credential_id: str, secret: str) -> bytes:
    return master_key.seal(secret.encode("ascii"), sealing_purpose(credential_id))


def mint_secret(
    kind: CredentialKind, credential_id: str, master_key: MasterKey, client_auth_method: int = 0
) -> MintedSecret:
    """A fresh secret for the credential `credential_id`: at creation, and at every rotation."""
    value = secret_format.mint(kind, credential_id)
    sealed = seal(master_key, credential_id, value) if is_sealed(kind, client_auth_method) else None
    return MintedSecret(value, secret_format.hash_secret(value), sealed)


# I6: how long a rotated credential's previous secret may keep verifying.
MAX_OVERLAP = timedelta(days=30)


def rotated_secret(record: models.Credential, master_key: MasterKey) -> MintedSecret:
    if CredentialKind(record.kind) in kinds.SECRETLESS:
        raise FieldError("id", "this kind of credential has no secret to rotate")
    return mint_secret(CredentialKind(record.kind), record.id, master_key, record.client_auth_method)


def create(
    spec: NewCredential, catalogue: Catalogue, master_key: MasterKey, now: datetime
) -> tuple[models.Credential, str]:
    """The row to store and the secret to show once; FieldError names what is wrong."""
    facts = kinds.facts(mintable(spec.kind))
    organization_id = _organization(spec)
    _check_carried(spec, facts, catalogue)
    method, public_jwk = _client_method(spec.kind, spec.client_auth_method, spec.public_jwk)
    if spec.expires_at is not None and spec.expires_at <= now:
        raise FieldError("expires_at", "must be in the future")
    identity = _service_identity(spec, facts)
    credential_id = secret_format.new_credential_id()
    secret = _no_secret() if facts.secretless else mint_secret(spec.kind, credential_id, master_key, method)
    row = models.Credential(
        id=credential_id,
        kind=int(spec.kind),
        organization_id=organization_id,
        application_id=spec.application_id or None,
        name=spec.name,
        secret_hash=secret.hash,
        secret_hint=secret_format.hint(secret.value),
        sealed_secret=secret.sealed,
        permissions=sorted(set(spec.permissions)),
        event_types_allowed=_patterns(spec.event_types_allowed, "event_types_allowed"),
        event_types_denied=_patterns(spec.event_types_denied, "event_types_denied"),
        basic_auth_enabled=spec.basic_auth_enabled,
        algorithms=_algorithms(spec.kind, spec.algorithms),
        client_auth_method=method,
        public_jwk=public_jwk,
        expires_at=spec.expires_at,
        service_identity=identity,
    )
    # A private_key_jwt client authenticates with its key only: the minted secret is never shown (its
    # hash fills the column and matches nothing anyone holds).
    return row, "" if method == PRIVATE_KEY_JWT else secret.value


def _no_secret() -> MintedSecret:
    # C10 proves itself with a certificate: the hash column holds nothing any secret hashes to.
    return MintedSecret("", "", None)


def _service_identity(spec: NewCredential, facts: kinds.KindFacts) -> str | None:
    """C10: the identity it is found by, in its one stored form; no other kind has one."""
    if not facts.secretless:
        if spec.service_identity:
            raise FieldError("service_identity", "only client-certificate credentials have one")
        return None
    if not spec.service_identity:
        raise FieldError("service_identity", "is required: the SPIFFE id or subject name to match")
    try:
        return client_certificate.service_identity(spec.service_identity)
    except client_certificate.IdentityError as exc:
        raise FieldError("service_identity", str(exc)) from None


def _organization(spec: NewCredential) -> str | None:
    """Admin tokens belong to no organization, every other kind to one; only application secrets (C2)
    are bound to an application, and must be."""
    if spec.kind is CredentialKind.ADMIN_TOKEN:
        if spec.organization_id:
            raise FieldError("organization_id", "admin tokens belong to no organization")
        organization_id = None
    else:
        organization_id = _required(spec.organization_id, "organization_id")
    if spec.kind is CredentialKind.APPLICATION_SECRET:
        _required(spec.application_id, "application_id")
    elif spec.application_id:
        raise FieldError("application_id", "only application secrets are bound to an application")
    return organization_id


def _required(value: str, field: str) -> str:
    if not value.strip():
        raise FieldError(field, "is required")
    return value


def _check_carried(spec: NewCredential, facts: kinds.KindFacts, catalogue: Catalogue) -> None:
    """Permissions (known actions), event patterns and Basic only on the kinds that carry them."""
    if facts.carries_permissions:
        unknown = sorted(set(spec.permissions) - set(catalogue.actions))
        if unknown:
            raise FieldError("permissions", f"unknown action(s) {unknown}")
    elif spec.permissions:
        raise FieldError("permissions", "this kind of credential carries no permissions")
    if not facts.carries_event_filters and (spec.event_types_allowed or spec.event_types_denied):
        raise FieldError("event_types_allowed", "only API keys and static tokens carry event patterns")
    if spec.basic_auth_enabled and spec.kind is not CredentialKind.API_KEY:
        raise FieldError("basic_auth_enabled", "only API keys may be used over HTTP Basic")


def _patterns(values: Sequence[str], field: str) -> list[str]:
    """S3: an event pattern is written in the event types' canonical form, which is what it matches."""
    for index, value in enumerate(values):
        problem = names.event_pattern_problem(value)
        if problem:
            raise FieldError(f"{field}[{index}]", problem)
    return list(values)


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
    if method not in CLIENT_AUTH_METHODS:
        raise FieldError("client_auth_method", "choose the client's one authentication method")
    if method != PRIVATE_KEY_JWT:
        if public_jwk:
            raise FieldError("public_jwk", "only private_key_jwt clients register a public key")
        return method, ""
    return method, _public_jwk(public_jwk)


def _public_jwk(text: str) -> str:
    """A private_key_jwt client's public key, as stored: a JWK for one of the accepted algorithms."""
    try:
        document = json.loads(text)
        key = load_jwk(document) if isinstance(document, dict) else None
    except (ValueError, KeySetError) as exc:
        raise FieldError("public_jwk", f"not a usable public JWK: {exc}") from None
    if key is None or key.is_secret or key.algorithm not in PRIVATE_KEY_ALGORITHMS:
        raise FieldError("public_jwk", f"must be a public key for one of {sorted(PRIVATE_KEY_ALGORITHMS)}")
    if any(member in document for member in _PRIVATE_MEMBERS):
        raise FieldError("public_jwk", "must not contain private key material")
    return json.dumps(document, sort_keys=True)
