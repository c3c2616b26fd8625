"""The admin service's outbound credentials (O1-O6): validated, sealed, never shown after creation."""

from __future__ import annotations

import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from watchword import secret_format
from watchword.api import convert
from watchword.api.errors import FieldError
from watchword.crypto.master_key import MasterKey
from watchword.outbound import header_values
from watchword.outbound import secrets as outbound_secrets
from watchword.outbound.network_guard import parse_token_url
from watchword.outbound.secrets import OutboundSecrets
from watchword.outbound.signer import SCHEME_BASIC, SCHEME_BEARER, SCHEME_NONE, SCHEME_OAUTH2
from watchword.store import models
from watchword.v1 import admin_pb2, common_pb2

MAX_SECRET = 8192
RESERVED_FORM_FIELDS = frozenset(
    {"grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type", "scope"}
)
ASSERTION_ALGORITHMS = ("ES256", "RS256")
PRIVATE_KEY_JWT = 4


def to_proto(row: models.OutboundCredential) -> admin_pb2.OutboundCredential:
    return admin_pb2.OutboundCredential(
        id=row.id,
        organization_id=row.organization_id,
        name=row.name,
        scheme=row.scheme,
        username=row.username,
        token_url=row.token_url,
        client_id=row.client_id,
        client_auth_method=row.client_auth_method,
        assertion_audience=row.assertion_audience,
        scope=row.scope,
        extra_form_fields=[common_pb2.KeyValue(name=n, value=v) for n, v in row.extra_form_fields],
        sign_payload=row.sign_payload,
        public_jwk=row.public_jwk,
        assertion_algorithm=row.assertion_algorithm,
        created_at=convert.timestamp(row.created_at),
        deactivated_at=convert.timestamp(row.deactivated_at),
        rotated_at=convert.timestamp(row.rotated_at),
        previous_secret_valid_until=convert.timestamp(row.previous_secret_valid_until),
    )


def _secret(value: str, field: str) -> str:
    return convert.bounded(value, field, MAX_SECRET)


def secrets_from_proto(message: admin_pb2.OutboundSecrets) -> OutboundSecrets:
    signing = _secret(message.payload_signing_secret, "secrets.payload_signing_secret")
    if signing:
        try:
            if (
                not signing.startswith(outbound_secrets.PAYLOAD_SECRET_PREFIX)
                or len(outbound_secrets.payload_key(signing)) < 24
            ):
                raise ValueError
        except (ValueError, binascii.Error):
            raise FieldError(
                "secrets.payload_signing_secret", "must be whsec_ and base64 of 24+ bytes"
            ) from None
    bearer_token = _secret(message.bearer_token, "secrets.bearer_token")
    password = _secret(message.password, "secrets.password")
    # They become header values when signing (O1, O2): checked by the rules signing checks them with.
    if bearer_token:  # empty: not given (a rotation keeps the old one)
        _header_part(header_values.bearer_token_problem(bearer_token), "secrets.bearer_token")
    _header_part(header_values.basic_part_problem(password), "secrets.password")
    return OutboundSecrets(
        bearer_token=bearer_token,
        password=password,
        client_secret=_secret(message.client_secret, "secrets.client_secret"),
        payload_signing_secret=signing,
    )


def _header_part(problem: str | None, field: str) -> None:
    """FieldError when a value that becomes (part of) a header is unusable; the value is never echoed."""
    if problem:
        raise FieldError(field, problem)


def _form_fields(fields: Sequence[common_pb2.KeyValue]) -> list[list[str]]:
    if len(fields) > 16:
        raise FieldError("credential.extra_form_fields", "at most 16 fields")
    found = []
    for index, field in enumerate(fields):
        name = convert.required(field.name, f"credential.extra_form_fields[{index}].name", 128)
        if name in RESERVED_FORM_FIELDS:
            raise FieldError(
                f"credential.extra_form_fields[{index}].name", f"{name!r} is set by Watchword itself"
            )
        found.append(
            [name, convert.bounded(field.value, f"credential.extra_form_fields[{index}].value", 2048)]
        )
    return found


def _private_key(algorithm: str, kid: str) -> tuple[str, str]:
    """O4 private_key_jwt: a key Watchword keeps; the public JWK is what the customer registers."""
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    # The kid is the credential id: Watchword's assertions name it, so the customer's server finds the key.
    return pem, json.dumps(jwk | {"alg": algorithm, "use": "sig", "kid": kid}, sort_keys=True)


def build(
    request: admin_pb2.CreateOutboundCredentialRequest, master_key: MasterKey
) -> tuple[models.OutboundCredential, str]:
    """The row to store and the payload signing secret to show once (when Watchword generated it)."""
    spec = request.credential
    given = secrets_from_proto(request.secrets)
    organization_id = convert.required(spec.organization_id, "credential.organization_id", convert.MAX_ID)
    name = convert.required(spec.name, "credential.name", 200)
    row = models.OutboundCredential(
        id=secret_format.new_credential_id(),
        organization_id=organization_id,
        name=name,
        scheme=spec.scheme,
        sign_payload=spec.sign_payload,
        sealed_secrets=b"",
    )
    private_key_pem = ""
    if spec.scheme == SCHEME_NONE:
        if not spec.sign_payload:
            raise FieldError("credential.sign_payload", "a credential with no scheme must sign payloads")
    elif spec.scheme == SCHEME_BEARER:
        if not given.bearer_token:
            raise FieldError("secrets.bearer_token", "is required for a Bearer credential")
    elif spec.scheme == SCHEME_BASIC:
        row.username = convert.required(spec.username, "credential.username", 255)
        _header_part(header_values.basic_part_problem(row.username, user_id=True), "credential.username")
        if not given.password:
            raise FieldError("secrets.password", "is required for a Basic credential")
    elif spec.scheme == SCHEME_OAUTH2:
        row.token_url = convert.required(spec.token_url, "credential.token_url", 2048)
        try:
            parse_token_url(row.token_url)  # the fetcher's own parser: what is stored can be fetched
        except ValueError as exc:
            raise FieldError("credential.token_url", str(exc)) from None
        row.client_id = convert.required(spec.client_id, "credential.client_id", 255)
        row.client_auth_method = spec.client_auth_method
        if spec.client_auth_method not in (1, 2, 3, PRIVATE_KEY_JWT):
            raise FieldError(
                "credential.client_auth_method", "choose how Watchword authenticates to the token server"
            )
        if spec.client_auth_method == PRIVATE_KEY_JWT:
            algorithm = spec.assertion_algorithm or "ES256"
            if algorithm not in ASSERTION_ALGORITHMS:
                raise FieldError("credential.assertion_algorithm", f"use one of {list(ASSERTION_ALGORITHMS)}")
            row.assertion_algorithm = algorithm
            private_key_pem, row.public_jwk = _private_key(algorithm, row.id)
        elif not given.client_secret:
            raise FieldError("secrets.client_secret", "is required for this client authentication method")
        row.assertion_audience = convert.bounded(
            spec.assertion_audience, "credential.assertion_audience", 2048
        )
        row.scope = convert.bounded(spec.scope, "credential.scope", 2048)
        row.extra_form_fields = _form_fields(spec.extra_form_fields)
    else:
        raise FieldError("credential.scheme", "choose NONE, BEARER, BASIC or OAUTH2_CLIENT_CREDENTIALS")
    generated = ""
    signing = given.payload_signing_secret
    if spec.sign_payload and not signing:
        signing = generated = outbound_secrets.new_payload_signing_secret()
    stored = OutboundSecrets(
        bearer_token=given.bearer_token,
        password=given.password,
        client_secret=given.client_secret,
        payload_signing_secret=signing if spec.sign_payload else "",
        private_key_pem=private_key_pem,
    )
    row.sealed_secrets = outbound_secrets.seal(master_key, row.id, stored)
    return row, generated


def rotated(
    row: models.OutboundCredential, request: admin_pb2.RotateOutboundCredentialRequest, master_key: MasterKey
) -> tuple[bytes, datetime | None, str]:
    """New sealed secrets, how long the previous ones hold, and a regenerated payload secret to show."""
    if request.overlap_seconds < 0 or request.overlap_seconds > 30 * 24 * 3600:
        raise FieldError("overlap_seconds", "must be between 0 and 2592000")
    current = outbound_secrets.unseal(master_key, row.id, row.sealed_secrets)
    newer = secrets_from_proto(request.secrets)
    generated = ""
    if request.regenerate_payload_signing_secret:
        if not row.sign_payload:
            raise FieldError("regenerate_payload_signing_secret", "this credential does not sign payloads")
        generated = outbound_secrets.new_payload_signing_secret()
        newer = OutboundSecrets(
            bearer_token=newer.bearer_token,
            password=newer.password,
            client_secret=newer.client_secret,
            payload_signing_secret=generated,
        )
    sealed = outbound_secrets.seal(master_key, row.id, current.merged_with(newer))
    until = (
        datetime.now(UTC) + timedelta(seconds=request.overlap_seconds) if request.overlap_seconds else None
    )
    return sealed, until, generated
