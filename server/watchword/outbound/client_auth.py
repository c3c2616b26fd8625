"""O3/O4 client authentication at the customer's token server (RFC 6749 §2.3.1, RFC 7523, OIDC Core §9).

- `client_secret_basic`: `Authorization: Basic base64(form-encode(id) ":" form-encode(secret))`;
- `client_secret_post`: `client_id` and `client_secret` in the form;
- `client_secret_jwt`: an HS256 assertion signed with the client secret (Coviu's "JWT");
- `private_key_jwt`: the same claims signed RS256/ES256 with Watchword's private key, `kid` optional.
The assertion's claims are `iss` = `sub` = client id, `aud` = `assertion_audience` or else the webhook URL
(Coviu's default), `iat`, `exp` = `iat` + 300 and a fresh `jti`, and nothing else; it is signed by
`jose.sign`. Every request carries `grant_type=client_credentials`, `scope` when set, then the extra form
fields (Auth0's `audience`). Like Authlib's `ClientAuth`, one small function per method in a table.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from urllib.parse import quote_plus, urlencode

from cryptography.hazmat.primitives import serialization

from watchword.domain import ClientAuthMethod
from watchword.jose.sign import PrivateKey, generate_key, sign_jwt
from watchword.outbound.credential import RESERVED_FORM_FIELDS
from watchword.outbound.token_endpoint import TokenEndpoint

__all__ = [
    "ASSERTION_LIFETIME_SECONDS",
    "ASSERTION_TYPE",
    "RESERVED_FORM_FIELDS",
    "basic_authorization",
    "client_assertion",
    "new_assertion_key",
    "token_request",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 300

Form = list[tuple[str, str]]
Headers = dict[str, str]


def basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: both parts form-encoded (UTF-8, then percent-encoding) before RFC 7617 Basic, so a
    ':' in the client id survives."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def client_assertion(endpoint: TokenEndpoint, audience: str, *, now: float | None = None) -> str:
    """The RFC 7523 §3 client assertion for `endpoint`, with a fresh `jti` each call."""
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": endpoint.client_id,
        "sub": endpoint.client_id,
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + ASSERTION_LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(24),
    }
    if endpoint.auth_method is ClientAuthMethod.CLIENT_SECRET_JWT:
        return sign_jwt(claims, endpoint.client_secret, "HS256")
    if endpoint.auth_method is not ClientAuthMethod.PRIVATE_KEY_JWT:
        raise ValueError(f"{endpoint.auth_method.rfc_name} sends no assertion")
    key = endpoint.private_key
    assert isinstance(key, PrivateKey)  # checked at construction
    headers = {"kid": endpoint.assertion_kid} if endpoint.assertion_kid else None
    return sign_jwt(claims, key, endpoint.assertion_algorithm, headers)


def _secret_basic(endpoint: TokenEndpoint, audience: str) -> tuple[Headers, Form]:
    return {"Authorization": basic_authorization(endpoint.client_id, endpoint.client_secret)}, []


def _secret_post(endpoint: TokenEndpoint, audience: str) -> tuple[Headers, Form]:
    return {}, [("client_id", endpoint.client_id), ("client_secret", endpoint.client_secret)]


def _assertion(endpoint: TokenEndpoint, audience: str) -> tuple[Headers, Form]:
    return {}, [
        ("client_id", endpoint.client_id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", client_assertion(endpoint, audience)),
    ]


_METHODS: dict[ClientAuthMethod, Callable[[TokenEndpoint, str], tuple[Headers, Form]]] = {
    ClientAuthMethod.CLIENT_SECRET_BASIC: _secret_basic,
    ClientAuthMethod.CLIENT_SECRET_POST: _secret_post,
    ClientAuthMethod.CLIENT_SECRET_JWT: _assertion,
    ClientAuthMethod.PRIVATE_KEY_JWT: _assertion,
}


def token_request(endpoint: TokenEndpoint, audience: str) -> tuple[Headers, bytes]:
    """Headers and form body of one client credentials request (RFC 6749 §4.4.2); a new assertion, hence
    a new `jti`, every time."""
    form: Form = [("grant_type", "client_credentials")]
    if endpoint.scope:
        form.append(("scope", endpoint.scope))
    headers, credentials = _METHODS[endpoint.auth_method](endpoint, audience)
    form += credentials
    form += endpoint.extra_form_fields
    return headers, urlencode(form).encode("ascii")


def new_assertion_key(algorithm: str, kid: str) -> tuple[str, str]:
    """O4 private_key_jwt: a new private key Watchword keeps (PKCS#8 PEM, sealed by the caller) and the
    public JWK the customer registers. The kid is the credential id: Watchword's assertions name it, so
    the customer's server finds the key."""
    private, jwk = generate_key(algorithm)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return pem, json.dumps(jwk | {"alg": algorithm, "use": "sig", "kid": kid}, sort_keys=True)
