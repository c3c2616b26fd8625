"""O1-O4: `outbound.credential`, the one validator of outbound credentials, and the enums that stand for
admin.proto's OutboundScheme and ClientAuthMethod. What the admin API stores, the token fetcher can use:
both run these checks, shown here on the same inputs."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from watchword.api import outbound_admin
from watchword.api.errors import FieldError
from watchword.crypto.master_key import MasterKey, generate
from watchword.domain import ClientAuthMethod
from watchword.outbound import secrets
from watchword.outbound.credential import (
    CredentialError,
    OutboundScheme,
    check_header_secrets,
    check_static_scheme,
    check_token_client,
    stored_member,
)
from watchword.outbound.secrets import OutboundSecrets
from watchword.outbound.token_endpoint import TokenEndpoint
from watchword.v1 import admin_pb2, common_pb2

MASTER = MasterKey.from_text(generate(), "credential-tests")
TOKEN_URL = "https://token.example/oauth/token"


def test_o1_o4_the_enums_carry_the_proto_values():
    for scheme in OutboundScheme:
        assert admin_pb2.OutboundScheme.Value(f"OUTBOUND_SCHEME_{scheme.name}") == scheme
    for method in ClientAuthMethod:
        assert admin_pb2.ClientAuthMethod.Value(f"CLIENT_AUTH_METHOD_{method.name}") == method
    assert len(OutboundScheme) == len(admin_pb2.OutboundScheme.keys()) - 1  # all but UNSPECIFIED
    assert len(ClientAuthMethod) == len(admin_pb2.ClientAuthMethod.keys()) - 1
    assert ClientAuthMethod.PRIVATE_KEY_JWT.rfc_name == "private_key_jwt"


def test_o1_an_integer_no_version_writes_is_no_member():
    assert stored_member(OutboundScheme, 2) is OutboundScheme.BEARER
    assert stored_member(OutboundScheme, 0) is None
    assert stored_member(ClientAuthMethod, 9) is None


def create(**fields: object) -> admin_pb2.CreateOutboundCredentialRequest:
    """An OAuth2 client_secret_post credential, with `fields` changed (`secret` for the client secret)."""
    secret = str(fields.pop("secret", "s3cret"))
    spec = {
        "organization_id": "org",
        "name": "hooks",
        "scheme": admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
        "token_url": TOKEN_URL,
        "client_id": "watchword",
        "client_auth_method": admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
    } | fields
    return admin_pb2.CreateOutboundCredentialRequest(
        credential=admin_pb2.OutboundCredential(**spec),
        secrets=admin_pb2.OutboundSecrets(client_secret=secret),
    )


def admin_refusal(request: admin_pb2.CreateOutboundCredentialRequest) -> str:
    """The field the admin API names when it refuses; "" when it builds the row."""
    try:
        outbound_admin.build(request, MASTER)
    except FieldError as exc:
        return exc.field
    return ""


def fields(*pairs: tuple[str, str]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(name=name, value=value) for name, value in pairs]


@pytest.mark.parametrize(
    ("pairs", "field"),
    [
        ((("audience", "a"), ("audience", "b")), "credential.extra_form_fields[1].name"),
        ((("resource", "r"), ("client_secret", "x")), "credential.extra_form_fields[1].name"),
        ((("grant_type", "password"),), "credential.extra_form_fields[0].name"),
        ((("audience", "a"), ("resource", "r")), ""),
    ],
)
def test_o4_extra_form_fields_are_judged_alike_by_the_admin_api_and_the_fetcher(pairs, field):
    """Duplicate names used to be stored and then refused at every signing; now both refuse them."""
    assert admin_refusal(create(extra_form_fields=fields(*pairs))) == field
    fetcher_accepts = True
    try:
        TokenEndpoint(
            "oc_1", TOKEN_URL, "watchword", ClientAuthMethod.CLIENT_SECRET_POST, "s", extra_form_fields=pairs
        )
    except ValueError:
        fetcher_accepts = False
    assert fetcher_accepts == (field == "")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"client_auth_method": 0}, "credential.client_auth_method"),
        ({"client_auth_method": 7}, "credential.client_auth_method"),
        ({"secret": ""}, "secrets.client_secret"),
        ({"token_url": "ftp://token.example/t"}, "credential.token_url"),
        ({"client_id": "  "}, "credential.client_id"),
        (
            {
                "client_auth_method": admin_pb2.CLIENT_AUTH_METHOD_PRIVATE_KEY_JWT,
                "assertion_algorithm": "PS256",
            },
            "credential.assertion_algorithm",
        ),
        ({"scheme": 9}, "credential.scheme"),
        ({"scheme": admin_pb2.OUTBOUND_SCHEME_NONE}, "credential.sign_payload"),
        ({"scheme": admin_pb2.OUTBOUND_SCHEME_BEARER}, "secrets.bearer_token"),
        ({"scheme": admin_pb2.OUTBOUND_SCHEME_BASIC, "username": "hooks"}, "secrets.password"),
        ({"scheme": admin_pb2.OUTBOUND_SCHEME_BASIC, "username": "ho:oks"}, "credential.username"),
    ],
)
def test_o1_o4_the_admin_api_names_the_field_the_validator_refuses(changes, field):
    assert admin_refusal(create(**changes)) == field


@pytest.mark.parametrize(
    ("method", "algorithm", "secret"),
    [
        (admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC, "", "s"),
        (admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST, "", "s"),
        (admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_JWT, "", "s"),
        (admin_pb2.CLIENT_AUTH_METHOD_PRIVATE_KEY_JWT, "", ""),
        (admin_pb2.CLIENT_AUTH_METHOD_PRIVATE_KEY_JWT, "RS256", ""),
    ],
)
def test_o3_o4_every_stored_oauth2_credential_makes_a_token_endpoint(method, algorithm, secret):
    """The row the admin API builds, with its sealed secrets and generated key, is what SignOutbound
    hands the fetcher: construction runs the fetcher's checks and passes."""
    row, _ = outbound_admin.build(
        create(client_auth_method=method, assertion_algorithm=algorithm, secret=secret), MASTER
    )
    current = secrets.unseal(MASTER, row.id, row.sealed_secrets)
    key = (
        serialization.load_pem_private_key(current.private_key_pem.encode(), password=None)
        if current.private_key_pem
        else None
    )
    endpoint = TokenEndpoint.from_stored(row, current, key)
    assert endpoint.auth_method is ClientAuthMethod(method)
    assert endpoint.assertion_kid == (row.id if key is not None else "")


def test_o3_a_stored_row_with_an_unknown_method_is_refused_not_a_key_error():
    row, _ = outbound_admin.build(create(), MASTER)
    row.client_auth_method = 7
    with pytest.raises(CredentialError, match="client_auth_method") as caught:
        TokenEndpoint.from_stored(row, secrets.unseal(MASTER, row.id, row.sealed_secrets), None)
    assert caught.value.field == "client_auth_method"


def test_o3_the_validator_names_fields_never_values():
    with pytest.raises(CredentialError) as caught:
        check_token_client(
            token_url="https://user:hunter2@token.example/t",
            client_id="id",
            auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
            assertion_algorithm="",
            extra_form_fields=(),
            has_client_secret=True,
        )
    assert caught.value.field == "token_url"
    assert "hunter2" not in str(caught.value)


def test_o1_o2_header_secrets_are_checked_per_scheme():
    injected = OutboundSecrets(bearer_token="t\r\nX: 1", password="p\nq")
    check_header_secrets(OutboundScheme.NONE, "", injected)  # NONE carries neither
    with pytest.raises(CredentialError) as bearer:
        check_header_secrets(OutboundScheme.BEARER, "", injected)
    with pytest.raises(CredentialError) as password:
        check_header_secrets(OutboundScheme.BASIC, "hooks", injected)
    assert (bearer.value.field, password.value.field) == ("bearer_token", "password")
    assert "X: 1" not in str(bearer.value)


def test_o5_no_scheme_needs_a_payload_signature():
    with pytest.raises(CredentialError, match="sign payloads"):
        check_static_scheme(OutboundScheme.NONE, "", OutboundSecrets(), sign_payload=False)
    check_static_scheme(OutboundScheme.NONE, "", OutboundSecrets(), sign_payload=True)


def test_o3_the_audience_and_the_cache_settings_of_an_endpoint():
    post = TokenEndpoint("oc_1", TOKEN_URL, "id", ClientAuthMethod.CLIENT_SECRET_POST, "the-secret")
    jwt = TokenEndpoint(
        "oc_1", TOKEN_URL, "id", ClientAuthMethod.CLIENT_SECRET_JWT, "s", assertion_audience="aud"
    )
    assert post.audience_for("https://hooks.example") == ""  # no assertion: one token for every URL
    assert jwt.audience_for("https://hooks.example") == "aud"
    assert post.settings() != jwt.settings()
    assert "the-secret" not in post.settings()  # secrets stay out of the cache key
