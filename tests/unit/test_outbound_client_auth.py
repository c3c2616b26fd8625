"""O3/O4: `outbound.client_auth`, how Watchword authenticates to a customer's token server (RFC 6749
§2.3.1, RFC 7523): the request each method produces, without a network."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from watchword.domain import ClientAuthMethod
from watchword.outbound.client_auth import (
    ASSERTION_LIFETIME_SECONDS,
    ASSERTION_TYPE,
    basic_authorization,
    client_assertion,
    new_assertion_key,
    token_request,
)
from watchword.outbound.token_endpoint import TokenEndpoint

TOKEN_URL = "https://token.example/oauth/token"
WEBHOOK_URL = "https://hooks.example/in"
SECRET = "a-client-secret-of-32-bytes-or-more"  # PyJWT, verifying, warns below 32


def endpoint(method: ClientAuthMethod, **fields: object) -> TokenEndpoint:
    arguments: dict[str, object] = {"client_secret": SECRET} if method.rfc_name.startswith("client_") else {}
    return TokenEndpoint("oc_1", TOKEN_URL, "the:client", method, **(arguments | fields))  # type: ignore[arg-type]


def form_of(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("ascii"), keep_blank_values=True)


def test_o3_basic_form_encodes_both_parts_before_base64():
    value = basic_authorization("the:client", "s3cr%t ü")
    pair = base64.b64decode(value.removeprefix("Basic ")).decode("ascii")
    assert pair == "the%3Aclient:s3cr%25t+%C3%BC"


def test_o3_client_secret_basic_sends_the_secret_in_the_header_only():
    headers, body = token_request(endpoint(ClientAuthMethod.CLIENT_SECRET_BASIC, scope="a b"), WEBHOOK_URL)
    assert headers == {"Authorization": basic_authorization("the:client", SECRET)}
    assert form_of(body) == [("grant_type", "client_credentials"), ("scope", "a b")]


def test_o3_client_secret_post_sends_id_and_secret_in_the_form_before_extra_fields():
    method = ClientAuthMethod.CLIENT_SECRET_POST
    headers, body = token_request(endpoint(method, extra_form_fields=(("audience", "api"),)), WEBHOOK_URL)
    assert headers == {}
    assert form_of(body) == [
        ("grant_type", "client_credentials"),
        ("client_id", "the:client"),
        ("client_secret", SECRET),
        ("audience", "api"),
    ]


def test_o3_client_secret_jwt_sends_an_hs256_assertion_for_the_webhook_url():
    headers, body = token_request(endpoint(ClientAuthMethod.CLIENT_SECRET_JWT), WEBHOOK_URL)
    form = dict(form_of(body))
    assert headers == {}
    assert set(form) == {"grant_type", "client_id", "client_assertion_type", "client_assertion"}
    assert form["client_assertion_type"] == ASSERTION_TYPE
    claims = jwt.decode(form["client_assertion"], SECRET, algorithms=["HS256"], audience=WEBHOOK_URL)
    assert claims["iss"] == claims["sub"] == "the:client"
    assert claims["exp"] - claims["iat"] == ASSERTION_LIFETIME_SECONDS
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "jti"}


def test_o4_private_key_jwt_signs_with_the_key_and_names_the_kid():
    key = ec.generate_private_key(ec.SECP256R1())
    pk = endpoint(
        ClientAuthMethod.PRIVATE_KEY_JWT, private_key=key, assertion_algorithm="ES256", assertion_kid="oc_1"
    )
    assertion = client_assertion(pk, "https://token.example", now=1_700_000_000)
    assert jwt.get_unverified_header(assertion) == {"alg": "ES256", "kid": "oc_1", "typ": "JWT"}
    claims = jwt.decode(
        assertion,
        key.public_key(),
        algorithms=["ES256"],
        audience="https://token.example",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert (claims["iat"], claims["exp"]) == (1_700_000_000, 1_700_000_000 + ASSERTION_LIFETIME_SECONDS)


def test_o3_every_assertion_has_a_fresh_jti():
    jwt_endpoint = endpoint(ClientAuthMethod.CLIENT_SECRET_JWT)
    ids = {
        jwt.decode(client_assertion(jwt_endpoint, "a"), options={"verify_signature": False})["jti"]
        for _ in range(20)
    }
    assert len(ids) == 20


def test_o3_basic_and_post_send_no_assertion():
    with pytest.raises(ValueError, match="sends no assertion"):
        client_assertion(endpoint(ClientAuthMethod.CLIENT_SECRET_POST), "a")


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_o4_a_new_assertion_key_signs_what_its_public_jwk_verifies(algorithm):
    pem, public_jwk = new_assertion_key(algorithm, "oc_9")
    document = json.loads(public_jwk)
    assert (document["kid"], document["alg"], document["use"]) == ("oc_9", algorithm, "sig")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    pk = endpoint(ClientAuthMethod.PRIVATE_KEY_JWT, private_key=key, assertion_algorithm=algorithm)
    assertion = client_assertion(pk, "aud")
    public = jwt.PyJWK(document).key
    assert jwt.decode(assertion, public, algorithms=[algorithm], audience="aud")["sub"] == "the:client"
