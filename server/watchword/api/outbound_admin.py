"""The admin service's outbound credentials (O1-O6): validated, sealed, never shown after creation."""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from watchword import secret_format
from watchword.api import convert
from watchword.api.errors import FieldError
from watchword.crypto.master_key import MasterKey
from watchword.outbound import client_auth, header_values
from watchword.outbound import secrets as outbound_secrets
from watchword.outbound.credential import (
    PRIVATE_KEY_ALGORITHMS,
    ClientAuthMethod,
    CredentialError,
    OutboundScheme,
    check_static_scheme,
    check_token_client,
    stored_member,
)
from watchword.outbound.secrets import OutboundSecrets
from watchword.store import models
from watchword.v1 import admin_pb2, common_pb2

MAX_SECRET = 8192
MAX_FORM_FIELDS = 16
# Settings the validator names that arrive in the request's `secrets`, not its `credential`.
_SECRET_FIELDS = frozenset({"bearer_token", "password", "client_secret"})


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
    """O4 extra form fields, bounded for the store (the validator checks their names)."""
    if len(fields) > MAX_FORM_FIELDS:
        raise FieldError("credential.extra_form_fields", f"at most {MAX_FORM_FIELDS} fields")
    found = []
    for index, field in enumerate(fields):
        name = convert.required(field.name, f"credential.extra_form_fields[{index}].name", 128)
        value = convert.bounded(field.value, f"credential.extra_form_fields[{index}].value", 2048)
        found.append([name, value])
    return found


def build(
    request: admin_pb2.CreateOutboundCredentialRequest, master_key: MasterKey
) -> tuple[models.OutboundCredential, str]:
    """The row to store and the payload signing secret to show once (when Watchword generated it)."""
    spec = request.credential
    given = secrets_from_proto(request.secrets)
    scheme = _scheme(spec.scheme)
    row = models.OutboundCredential(
        id=secret_format.new_credential_id(),
        organization_id=convert.required(spec.organization_id, "credential.organization_id", convert.MAX_ID),
        name=convert.required(spec.name, "credential.name", 200),
        scheme=int(scheme),
        sign_payload=spec.sign_payload,
        sealed_secrets=b"",
    )
    if scheme is OutboundScheme.BASIC:
        row.username = convert.required(spec.username, "credential.username", 255)
    _checked(lambda: check_static_scheme(scheme, row.username, given, sign_payload=spec.sign_payload))
    private_key_pem = _oauth2(row, spec, given) if scheme is OutboundScheme.OAUTH2_CLIENT_CREDENTIALS else ""
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


def _scheme(value: int) -> OutboundScheme:
    scheme = stored_member(OutboundScheme, value)
    if scheme is None:
        raise FieldError("credential.scheme", "choose NONE, BEARER, BASIC or OAUTH2_CLIENT_CREDENTIALS")
    return scheme


def _checked(check: Callable[[], None]) -> None:
    """Run one of the outbound validator's checks; its CredentialError becomes the admin FieldError."""
    try:
        check()
    except CredentialError as exc:
        section = "secrets" if exc.field in _SECRET_FIELDS else "credential"
        raise FieldError(f"{section}.{exc.field}", str(exc)) from None


def _oauth2(
    row: models.OutboundCredential, spec: admin_pb2.OutboundCredential, given: OutboundSecrets
) -> str:
    """O3/O4: bounded for the store, then checked by the fetcher's own validator; returns the PEM of the
    private key generated for private_key_jwt, else ""."""
    row.token_url = convert.required(spec.token_url, "credential.token_url", 2048)
    row.client_id = convert.required(spec.client_id, "credential.client_id", 255)
    method = stored_member(ClientAuthMethod, spec.client_auth_method)  # None: refused by the validator
    row.client_auth_method = spec.client_auth_method
    if method is ClientAuthMethod.PRIVATE_KEY_JWT:
        row.assertion_algorithm = spec.assertion_algorithm or PRIVATE_KEY_ALGORITHMS[0]
    row.assertion_audience = convert.bounded(spec.assertion_audience, "credential.assertion_audience", 2048)
    row.scope = convert.bounded(spec.scope, "credential.scope", 2048)
    row.extra_form_fields = _form_fields(spec.extra_form_fields)
    _checked(
        lambda: check_token_client(
            token_url=row.token_url,
            client_id=row.client_id,
            auth_method=method,
            assertion_algorithm=row.assertion_algorithm,
            extra_form_fields=[(name, value) for name, value in row.extra_form_fields],
            has_client_secret=bool(given.client_secret),
        )
    )
    if method is not ClientAuthMethod.PRIVATE_KEY_JWT:
        return ""
    private_key_pem, row.public_jwk = client_auth.new_assertion_key(row.assertion_algorithm, row.id)
    return private_key_pem


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
