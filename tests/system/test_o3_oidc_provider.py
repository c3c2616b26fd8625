"""O3/O4 against a real OAuth 2.0 server no one here wrote: npm's `oidc-provider` (tests/oidc_provider,
run by tests/support/oidc_provider.py on 127.0.0.1), client credentials grant.

Each client authentication method gets a token from it through `TokenCache`, and the token is checked
by asking oidc-provider itself (RFC 7662 introspection): active, issued to that client. Then once through
the real Watchword server: SignOutbound's Bearer token is one oidc-provider issued, cached, and a wrong
secret is a non-retryable `token_server_rejected_client`.

oidc-provider accepts only its issuer or token endpoint as a client assertion's `aud`, so the assertion
tests set `assertion_audience`; the webhook-URL default is checked against the tests' own token server
(server/test_o3_token_fetcher.py), and here only shown to be refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from watchword.domain import ClientAuthMethod
from watchword.outbound.network_guard import NetworkGuard
from watchword.outbound.token_cache import FetchedToken, OutboundTokenError, TokenCache
from watchword.outbound.token_endpoint import TokenEndpoint
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.oidc_provider import OidcProvider, client_credentials_client, free_port
from support.server import WatchwordProcess
from support.tenants import make_tenant

WEBHOOK_URL = "https://hooks.customer.example/watchword/events"
LOCAL = NetworkGuard(allow_private=True)  # oidc-provider runs on 127.0.0.1
TOKEN_LIFETIME = 600  # ttl.ClientCredentials in tests/oidc_provider/server.mjs

# A client id and secret with characters RFC 6749 §2.3.1 form-encodes before HTTP Basic.
BASIC_ID, BASIC_SECRET = "watchword:basic+1 %", "s3cr:et+ %25 x"
POST_ID, POST_SECRET = "watchword-post", "post-secret-0123456789"
JWT_ID, JWT_SECRET = "watchword-jwt", "a-shared-secret-of-at-least-32-bytes-for-hs256!"
PRIVATE_KEY_ID = "watchword-private-key"
SCOPED_ID, SCOPED_SECRET = "watchword-scoped", "scoped-secret-0123456789"
SCOPE = "webhooks:deliver"
API = "https://api.customer.example"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **members: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return jwk | {"use": "sig"} | members


CLIENTS = [
    client_credentials_client(BASIC_ID, "client_secret_basic", client_secret=BASIC_SECRET),
    client_credentials_client(POST_ID, "client_secret_post", client_secret=POST_SECRET),
    client_credentials_client(JWT_ID, "client_secret_jwt", client_secret=JWT_SECRET),
    client_credentials_client(
        PRIVATE_KEY_ID,
        "private_key_jwt",
        jwks={"keys": [public_jwk(RSA_KEY, kid="rsa-1", alg="RS256"), public_jwk(EC_KEY, alg="ES256")]},
    ),
    client_credentials_client(SCOPED_ID, "client_secret_post", client_secret=SCOPED_SECRET, scope=SCOPE),
]


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider(CLIENTS, scopes=(SCOPE,), resource_servers={API: {"scope": SCOPE}}) as running:
        yield running


@pytest.fixture
async def make_cache() -> AsyncIterator[Callable[..., TokenCache]]:
    made: list[TokenCache] = []

    def make(**options: Any) -> TokenCache:
        cache = TokenCache(guard=LOCAL, timeout_seconds=5.0, backoff_seconds=0.01, **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


def endpoint(provider: OidcProvider, method: str, client_id: str, **fields: Any) -> TokenEndpoint:
    """An endpoint for `method`, named as RFC 7591 (and oidc-provider's client metadata) names it."""
    return TokenEndpoint(
        credential_id="oc_oidc",
        token_url=provider.token_endpoint,
        client_id=client_id,
        auth_method=ClientAuthMethod[method.upper()],
        **fields,
    )


def assert_issued_by(provider: OidcProvider, token: FetchedToken, client_id: str) -> dict[str, Any]:
    """oidc-provider says it issued `token` to `client_id` with its client credentials lifetime."""
    assert token.token_type == "Bearer"
    assert token.access_token
    answer = provider.introspect(token.access_token, POST_ID, POST_SECRET)
    assert answer["active"] is True, answer
    assert answer["client_id"] == client_id
    assert answer["iss"] == provider.issuer
    assert answer["exp"] - answer["iat"] == TOKEN_LIFETIME
    return answer


async def fetch_twice(cache: TokenCache, endpoint: TokenEndpoint) -> FetchedToken:
    """A token, then the same one again from the cache: one request to oidc-provider."""
    before = time.monotonic()
    token = await cache.token(endpoint, WEBHOOK_URL)
    assert before + TOKEN_LIFETIME - 1 <= token.expires_at <= time.monotonic() + TOKEN_LIFETIME
    assert await cache.token(endpoint, WEBHOOK_URL) is token
    assert (cache.stats.http_requests, cache.stats.hits) == (1, 1)
    return token


# ---- (1) each client authentication method, through TokenCache ----


async def test_o3_client_secret_basic_with_form_encoded_id_and_secret(provider, make_cache):
    token = await fetch_twice(
        make_cache(), endpoint(provider, "client_secret_basic", BASIC_ID, client_secret=BASIC_SECRET)
    )
    assert_issued_by(provider, token, BASIC_ID)


async def test_o3_client_secret_post(provider, make_cache):
    token = await fetch_twice(
        make_cache(), endpoint(provider, "client_secret_post", POST_ID, client_secret=POST_SECRET)
    )
    assert_issued_by(provider, token, POST_ID)


@pytest.mark.parametrize("audience", ["issuer", "token_endpoint"])
async def test_o3_client_secret_jwt_with_the_issuer_or_token_endpoint_as_audience(
    provider, make_cache, audience
):
    configured = getattr(provider, audience)
    token = await fetch_twice(
        make_cache(),
        endpoint(
            provider, "client_secret_jwt", JWT_ID, client_secret=JWT_SECRET, assertion_audience=configured
        ),
    )
    assert_issued_by(provider, token, JWT_ID)


@pytest.mark.parametrize(("key", "algorithm", "kid"), [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "")])
async def test_o4_private_key_jwt(provider, make_cache, key, algorithm, kid):
    token = await fetch_twice(
        make_cache(),
        endpoint(
            provider,
            "private_key_jwt",
            PRIVATE_KEY_ID,
            private_key=key,
            assertion_algorithm=algorithm,
            assertion_kid=kid,
            assertion_audience=provider.issuer,
        ),
    )
    assert_issued_by(provider, token, PRIVATE_KEY_ID)


async def test_o4_scope_and_a_resource_form_field_give_a_jwt_access_token_for_that_api(provider, make_cache):
    # RFC 8707 `resource` as an extra form field: oidc-provider answers an RFC 9068 JWT for that API.
    token = await fetch_twice(
        make_cache(),
        endpoint(
            provider,
            "client_secret_post",
            SCOPED_ID,
            client_secret=SCOPED_SECRET,
            scope=SCOPE,
            extra_form_fields=(("resource", API),),
        ),
    )
    header = jwt.get_unverified_header(token.access_token)
    signing_key = jwt.PyJWKSet.from_dict(provider.jwks())[header["kid"]]
    claims = jwt.decode(
        token.access_token, signing_key, algorithms=[header["alg"]], audience=API, issuer=provider.issuer
    )
    assert claims["client_id"] == SCOPED_ID
    assert claims["scope"] == SCOPE
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME


# ---- what oidc-provider refuses, as Watchword classifies it ----


@pytest.mark.parametrize(
    ("method", "client_id", "fields"),
    [
        ("client_secret_basic", BASIC_ID, {"client_secret": "wrong"}),
        ("client_secret_post", POST_ID, {"client_secret": "wrong"}),
        ("client_secret_jwt", JWT_ID, {"client_secret": "wrong-but-long-enough-for-hs256-0123456789"}),
        (
            "private_key_jwt",
            PRIVATE_KEY_ID,
            {"private_key": ec.generate_private_key(ec.SECP256R1()), "assertion_algorithm": "ES256"},
        ),
    ],
    ids=["basic", "post", "client_secret_jwt", "private_key_jwt-unregistered-key"],
)
async def test_o3_wrong_client_credentials_are_rejected_and_not_retried(
    provider, make_cache, method, client_id, fields
):
    if method in ("client_secret_jwt", "private_key_jwt"):
        fields = fields | {"assertion_audience": provider.issuer}
    cache = make_cache()
    with pytest.raises(OutboundTokenError) as caught:
        await cache.token(endpoint(provider, method, client_id, **fields), WEBHOOK_URL)
    assert (caught.value.reason, caught.value.retryable) == ("token_server_rejected_client", False)
    assert cache.stats.http_requests == 1


async def test_o3_assertion_with_the_default_webhook_url_audience_is_refused_by_oidc_provider(
    provider, make_cache
):
    # Why the tests above configure assertion_audience: oidc-provider takes only its issuer or endpoints.
    cache = make_cache()
    with pytest.raises(OutboundTokenError) as caught:
        await cache.token(
            endpoint(provider, "client_secret_jwt", JWT_ID, client_secret=JWT_SECRET), WEBHOOK_URL
        )
    assert (caught.value.reason, caught.value.retryable) == ("token_server_rejected_client", False)
    assert provider.logged(
        "audience (aud) must equal the endpoint url, issuer identifier or token endpoint url"
    )


# ---- (2) through the real Watchword server ----


def create(server: WatchwordProcess, secret: str = "", **credential: Any) -> admin_pb2.OutboundCredential:
    request = admin_pb2.CreateOutboundCredentialRequest(
        credential=admin_pb2.OutboundCredential(
            scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS, **credential
        ),
        secrets=admin_pb2.OutboundSecrets(client_secret=secret),
    )
    created = server.admin().CreateOutboundCredential(request, metadata=server.admin_metadata, timeout=10)
    return created.credential


def sign(server: WatchwordProcess, credential_id: str) -> auth_pb2.SignOutboundResponse:
    request = auth_pb2.SignOutboundRequest(
        outbound_credential_id=credential_id, method="POST", url=WEBHOOK_URL, body=b'{"type":"ping"}'
    )
    return server.auth().SignOutbound(request, metadata=server.admin_metadata, timeout=10)


def bearer(response: auth_pb2.SignOutboundResponse) -> str:
    assert response.WhichOneof("result") == "signed", response
    headers = {header.name: header.value for header in response.signed.headers}
    assert set(headers) == {"Authorization"}
    scheme, _, token = headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    assert token
    return token


@pytest.fixture(scope="module")
def through_watchword(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """Watchword with three OAuth2 credentials, then oidc-provider on the port their token URL names
    (it must know the public key Watchword generated for private_key_jwt before it starts)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {"WATCHWORD_OUTBOUND_ALLOW_PRIVATE_TOKEN_URLS": "true"}
    with WatchwordProcess(tmp_path_factory.mktemp("o3-oidc-provider") / "data", env=env) as server:
        org = make_tenant(server, "o3-oidc-provider").organization_id
        common = {"organization_id": org, "token_url": f"{issuer}/token"}
        post = create(
            server,
            POST_SECRET,
            name="post",
            client_id=POST_ID,
            client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
            **common,
        )
        wrong = create(
            server,
            "not-the-secret",
            name="wrong",
            client_id=POST_ID,
            client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
            **common,
        )
        private_key = create(
            server,
            name="private-key",
            client_id=PRIVATE_KEY_ID,
            client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_PRIVATE_KEY_JWT,
            assertion_audience=issuer,
            scope=SCOPE,
            extra_form_fields=[common_pb2.KeyValue(name="resource", value=API)],
            **common,
        )
        jwk = json.loads(private_key.public_jwk)
        assert jwk["kid"] == private_key.id
        clients = [
            client_credentials_client(POST_ID, "client_secret_post", client_secret=POST_SECRET),
            client_credentials_client(PRIVATE_KEY_ID, "private_key_jwt", jwks={"keys": [jwk]}, scope=SCOPE),
        ]
        with OidcProvider(
            clients, port=port, scopes=(SCOPE,), resource_servers={API: {"scope": SCOPE}}
        ) as idp:
            assert (idp.issuer, idp.token_endpoint) == (issuer, common["token_url"])
            yield SimpleNamespace(
                server=server, provider=idp, post=post, wrong=wrong, private_key=private_key
            )


def test_o3_sign_outbound_attaches_a_token_oidc_provider_issued_and_reuses_it(through_watchword):
    ww = through_watchword
    token = bearer(sign(ww.server, ww.post.id))
    answer = ww.provider.introspect(token, POST_ID, POST_SECRET)
    assert (answer["active"], answer["client_id"]) == (True, POST_ID)
    assert bearer(sign(ww.server, ww.post.id)) == token, "the second delivery reuses the cached token"


def test_o3_sign_outbound_with_a_wrong_secret_is_token_server_rejected_client(through_watchword):
    ww = through_watchword
    error = sign(ww.server, ww.wrong.id).error
    assert (error.reason, error.retryable) == ("token_server_rejected_client", False)
    assert "not-the-secret" not in error.message


def test_o4_sign_outbound_private_key_jwt_with_the_key_watchword_generated(through_watchword):
    # The public JWK from the admin answer, registered with oidc-provider; scope and `resource` reach it.
    ww = through_watchword
    token = bearer(sign(ww.server, ww.private_key.id))
    header = jwt.get_unverified_header(token)
    signing_key = jwt.PyJWKSet.from_dict(ww.provider.jwks())[header["kid"]]
    claims = jwt.decode(
        token, signing_key, algorithms=[header["alg"]], audience=API, issuer=ww.provider.issuer
    )
    assert (claims["client_id"], claims["scope"]) == (PRIVATE_KEY_ID, SCOPE)
    assert bearer(sign(ww.server, ww.private_key.id)) == token
