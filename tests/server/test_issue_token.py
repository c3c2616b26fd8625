"""IssueToken (I1-I3, I5, I6) over gRPC and over the OAuth HTTP endpoints, with a real OAuth client
library (authlib) for the four client authentication methods, and PyJWT checking the tokens."""

from __future__ import annotations

import json
import socket
import time
import warnings

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from watchword import reasons, secret_format
from watchword.domain import CredentialKind
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.server import WatchwordProcess
from support.tenants import API_KEY, create_credential, make_tenant

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib announces a future move of its httpx integration
    from authlib.integrations.httpx_client import OAuth2Client
    from authlib.oauth2.rfc7523 import ClientSecretJWT, PrivateKeyJWT
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
AUDIENCE = "urn:watchword:api"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    env = {
        "WATCHWORD_HTTP_PORT": str(port),
        "WATCHWORD_TOKEN_ENDPOINT_URL": f"http://127.0.0.1:{port}/oauth/token",
        "WATCHWORD_MAX_TOKEN_LIFETIME_SECONDS": "7200",
    }
    with WatchwordProcess(tmp_path_factory.mktemp("issuer") / "data", env=env) as process:
        assert process.http_port == port
        yield process


def base_url(server: WatchwordProcess) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def jwks(server: WatchwordProcess) -> dict:
    return httpx.get(f"{base_url(server)}/.well-known/jwks.json", timeout=10).json()


def verify_with_pyjwt(server: WatchwordProcess, token: str) -> dict:
    """What a sibling service does offline: plain PyJWT and the published JWKS, nothing of ours."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks(server)["keys"] if k["kid"] == kid)
    return jwt.decode(token, key, algorithms=[key.algorithm_name], audience=AUDIENCE, issuer="urn:watchword")


def authenticate(server: WatchwordProcess, token: str) -> auth_pb2.AuthenticateResponse:
    http = common_pb2.HttpRequest(
        headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")]
    )
    return server.auth().Authenticate(
        auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(http=http)), timeout=10
    )


def issue(server: WatchwordProcess, **fields: object) -> auth_pb2.IssueTokenResponse:
    return server.auth().IssueToken(auth_pb2.IssueTokenRequest(**fields), timeout=10)


@pytest.fixture(scope="module")
def tenant(issuer):
    return make_tenant(issuer, "issuing")


def oauth_client(server: WatchwordProcess, org: str, method: int, **fields: object):
    return create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=org,
        name="svc",
        permissions=["event.send", "application.list"],
        client_auth_method=method,
        **fields,
    )


# ---- I1 ----


def test_i1_api_key_exchange_gives_a_60_minute_token_carrying_the_key(issuer, tenant) -> None:
    key = create_credential(
        issuer,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="k",
        permissions=["event.send", "application.list"],
    )
    response = issue(issuer, api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret))
    token = response.token
    assert (token.token_type, token.expires_in) == ("Bearer", 3600)
    assert token.scope == "application.list event.send"
    claims = verify_with_pyjwt(issuer, token.access_token)
    assert claims["organization_id"] == tenant.organization_id
    assert claims["credential_id"] == key.credential.id
    assert claims["jti"] == token.token_id
    assert jwt.get_unverified_header(token.access_token)["typ"] == "at+jwt"
    principal = authenticate(issuer, token.access_token).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_WATCHWORD_TOKEN
    assert sorted(principal.permissions) == ["application.list", "event.send"]


def test_i1_lifetime_is_bounded_and_scope_narrowed(issuer, tenant) -> None:
    key = create_credential(
        issuer,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="k",
        permissions=["event.send", "application.list"],
    )
    grant = auth_pb2.ApiKeyExchangeGrant(api_key=key.secret)
    assert issue(issuer, api_key_exchange=grant, requested_lifetime_seconds=120).token.expires_in == 120
    assert issue(issuer, api_key_exchange=grant, requested_lifetime_seconds=10**6).token.expires_in == 7200
    assert issue(issuer, api_key_exchange=grant, scope="event.send").token.scope == "event.send"
    assert (
        issue(issuer, api_key_exchange=grant, scope="event.send application.create").error.error
        == "invalid_scope"
    )
    assert (
        issue(issuer, api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key="wwak_nope")).error.error
        == "invalid_grant"
    )
    assert issue(issuer).error.error == "invalid_request"


def test_i6_s6_deactivating_a_key_refuses_every_token_minted_from_it(issuer, tenant) -> None:
    key = create_credential(
        issuer, kind=API_KEY, organization_id=tenant.organization_id, name="k", permissions=["event.send"]
    )
    tokens = [
        issue(issuer, api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret)).token.access_token
        for _ in range(3)
    ]
    assert all(authenticate(issuer, t).HasField("principal") for t in tokens)
    issuer.admin().DeactivateCredential(
        admin_pb2.DeactivateCredentialRequest(id=key.credential.id), metadata=issuer.admin_metadata
    )
    assert {authenticate(issuer, t).refusal.reason for t in tokens} == {reasons.CREDENTIAL_DEACTIVATED}


def test_i6_revoking_one_token_by_jti(issuer, tenant) -> None:
    key = create_credential(
        issuer, kind=API_KEY, organization_id=tenant.organization_id, name="k", permissions=["event.send"]
    )
    first = issue(issuer, api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret)).token
    second = issue(issuer, api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret)).token
    assert authenticate(issuer, first.access_token).HasField("principal")
    issuer.admin().RevokeToken(
        admin_pb2.RevokeTokenRequest(token_id=first.token_id), metadata=issuer.admin_metadata
    )
    assert authenticate(issuer, first.access_token).refusal.reason == reasons.TOKEN_REVOKED
    assert authenticate(issuer, second.access_token).HasField("principal")


def test_i6_s3_a_token_keeps_obeying_its_keys_event_filters(issuer, tenant) -> None:
    key = create_credential(
        issuer,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="k",
        permissions=["event.send"],
        event_types_denied=["secret.*"],
    )
    token = issue(
        issuer, api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret)
    ).token.access_token
    http = common_pb2.HttpRequest(
        headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")]
    )
    request = auth_pb2.AuthorizeRequest(
        credential=common_pb2.CredentialSource(http=http),
        action="event.send",
        resource=auth_pb2.Resource(application_id=tenant.application_id, event_type="secret.rotated"),
    )
    assert issuer.auth().Authorize(request, timeout=10).decision.reason == reasons.EVENT_TYPE_DENIED


# ---- I2 over gRPC, I3 ----


def test_i2_client_credentials_over_grpc(issuer, tenant) -> None:
    client = oauth_client(issuer, tenant.organization_id, 2)
    auth = auth_pb2.ClientAuthentication(client_id=client.credential.id, client_secret=client.secret)
    token = issue(
        issuer, client_credentials=auth_pb2.ClientCredentialsGrant(client=auth), scope="event.send"
    ).token
    assert token.scope == "event.send"
    claims = verify_with_pyjwt(issuer, token.access_token)
    assert claims["client_id"] == client.credential.id
    wrong = auth_pb2.ClientAuthentication(client_id=client.credential.id, client_secret="wwoc_wrong")
    assert (
        issue(issuer, client_credentials=auth_pb2.ClientCredentialsGrant(client=wrong)).error.error
        == "invalid_client"
    )


def test_c9_i2_grpc_answers_unknown_and_wrong_clients_alike(issuer, tenant) -> None:
    """IssueToken runs the grants the HTTP endpoint runs: the same single refusal over gRPC."""
    post = oauth_client(issuer, tenant.organization_id, 2)
    basic = oauth_client(issuer, tenant.organization_id, 1)
    unknown_id = "0123456789ABCDEF"
    attempts = {
        "unknown id": (unknown_id, secret_format.mint(CredentialKind.OAUTH_CLIENT, unknown_id)),
        "wrong secret": (
            post.credential.id,
            secret_format.mint(CredentialKind.OAUTH_CLIENT, post.credential.id),
        ),
        "registered for basic": (basic.credential.id, basic.secret),
    }
    errors = {}
    for name, (client_id, secret) in attempts.items():
        auth = auth_pb2.ClientAuthentication(client_id=client_id, client_secret=secret)
        errors[name] = issue(issuer, client_credentials=auth_pb2.ClientCredentialsGrant(client=auth)).error
    assert {(e.error, e.error_description) for e in errors.values()} == {
        ("invalid_client", "client authentication failed")
    }, errors


def test_i3_s5_subject_token_acts_only_as_its_subject(issuer, tenant) -> None:
    connector = create_credential(
        issuer,
        kind=common_pb2.CREDENTIAL_KIND_CONNECTOR,
        organization_id=tenant.organization_id,
        name="hull",
        permissions=["track", "traits"],
    )
    me = common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id="u-1")
    grant = auth_pb2.SubjectTokenGrant(
        connector_id=connector.credential.id, connector_secret=connector.secret, subject=me
    )
    token = issue(issuer, subject_token=grant).token
    assert token.scope == "track traits"
    principal = authenticate(issuer, token.access_token).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_SUBJECT_JWT
    assert principal.subject.id == "u-1"

    def decide(subject_id: str, action: str = "track") -> auth_pb2.Decision:
        http = common_pb2.HttpRequest(
            headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {token.access_token}")]
        )
        subject = common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id=subject_id)
        resource = auth_pb2.Resource(organization_id=tenant.organization_id, subject=subject)
        request = auth_pb2.AuthorizeRequest(
            credential=common_pb2.CredentialSource(http=http), action=action, resource=resource
        )
        return issuer.auth().Authorize(request, timeout=10).decision

    assert (decide("u-1").allowed, decide("u-1").rule) == (True, "S5")
    assert decide("u-2").reason == reasons.SUBJECT_MISMATCH
    assert decide("u-1", "alias").reason == reasons.ACTION_NOT_GRANTED
    bad = auth_pb2.SubjectTokenGrant(
        connector_id=connector.credential.id, connector_secret="wwcs_x", subject=me
    )
    assert issue(issuer, subject_token=bad).error.error == "invalid_client"


# ---- I2 over HTTP with authlib ----


def _fetch(server: WatchwordProcess, client: OAuth2Client, **params: str) -> dict:
    with client:
        return client.fetch_token(
            f"{base_url(server)}/oauth/token", grant_type="client_credentials", **params
        )


def test_i2_authlib_client_secret_basic(issuer, tenant) -> None:
    client = oauth_client(issuer, tenant.organization_id, 1)
    token = _fetch(
        issuer,
        OAuth2Client(client.credential.id, client.secret, token_endpoint_auth_method="client_secret_basic"),
    )
    assert verify_with_pyjwt(issuer, token["access_token"])["client_id"] == client.credential.id
    assert authenticate(issuer, token["access_token"]).HasField("principal")


def test_i2_authlib_client_secret_post(issuer, tenant) -> None:
    client = oauth_client(issuer, tenant.organization_id, 2)
    token = _fetch(
        issuer,
        OAuth2Client(client.credential.id, client.secret, token_endpoint_auth_method="client_secret_post"),
        scope="event.send",
    )
    assert token["scope"] == "event.send"
    assert verify_with_pyjwt(issuer, token["access_token"])["scope"] == "event.send"


def test_i2_authlib_client_secret_jwt(issuer, tenant) -> None:
    client = oauth_client(issuer, tenant.organization_id, 3)
    endpoint = f"{base_url(issuer)}/oauth/token"
    session = OAuth2Client(
        client.credential.id, client.secret, token_endpoint_auth_method=ClientSecretJWT(endpoint, alg="HS256")
    )
    token = _fetch(issuer, session)
    assert authenticate(issuer, token["access_token"]).principal.organization_id == tenant.organization_id


def test_i2_authlib_private_key_jwt(issuer, tenant) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"alg": "RS256"}
    client = oauth_client(issuer, tenant.organization_id, 4, public_jwk=json.dumps(public_jwk))
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    endpoint = f"{base_url(issuer)}/oauth/token"
    session = OAuth2Client(
        client.credential.id, pem, token_endpoint_auth_method=PrivateKeyJWT(endpoint, alg="RS256")
    )
    token = _fetch(issuer, session)
    assert verify_with_pyjwt(issuer, token["access_token"])["sub"] == client.credential.id


def test_i2_http_errors_are_shaped_as_rfc6749_section_5_2(issuer, tenant) -> None:
    url = f"{base_url(issuer)}/oauth/token"
    client = oauth_client(issuer, tenant.organization_id, 1)
    bad = httpx.post(
        url, data={"grant_type": "client_credentials"}, auth=(client.credential.id, "wwoc_wrong"), timeout=10
    )
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client"
    assert bad.headers["www-authenticate"].startswith("Basic")
    assert bad.headers["cache-control"] == "no-store"
    unknown = httpx.post(url, data={"grant_type": "password"}, timeout=10)
    assert (unknown.status_code, unknown.json()["error"]) == (400, "unsupported_grant_type")
    missing = httpx.post(url, data={}, timeout=10)
    assert missing.json()["error"] == "invalid_request"
    twice = httpx.post(
        url,
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert twice.json()["error"] == "invalid_request"
    scope = httpx.post(
        url,
        data={"grant_type": "client_credentials", "scope": "organization.delete"},
        auth=(client.credential.id, client.secret),
        timeout=10,
    )
    assert scope.json()["error"] == "invalid_scope"


def test_i5_metadata_and_jwks_are_published(issuer) -> None:
    metadata = httpx.get(f"{base_url(issuer)}/.well-known/oauth-authorization-server", timeout=10).json()
    assert metadata["issuer"] == "urn:watchword"
    assert metadata["token_endpoint"] == f"{base_url(issuer)}/oauth/token"
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    keys = jwks(issuer)["keys"]
    assert keys
    assert all(not ({"d", "p", "q", "k"} & set(key)) for key in keys)


def test_i5_rotation_keeps_earlier_tokens_verifying(issuer, tenant) -> None:
    key = create_credential(
        issuer, kind=API_KEY, organization_id=tenant.organization_id, name="k", permissions=["event.send"]
    )
    grant = auth_pb2.ApiKeyExchangeGrant(api_key=key.secret)
    before = [issue(issuer, api_key_exchange=grant).token.access_token for _ in range(5)]
    rotated = issuer.admin().RotateSigningKey(
        admin_pb2.RotateSigningKeyRequest(), metadata=issuer.admin_metadata
    )
    after = issue(issuer, api_key_exchange=grant).token.access_token
    assert jwt.get_unverified_header(after)["kid"] == rotated.kid
    for token in [*before, after]:
        assert authenticate(issuer, token).HasField("principal")
        assert verify_with_pyjwt(issuer, token)
    with pytest.raises(grpc.RpcError):
        issuer.admin().RotateSigningKey(
            admin_pb2.RotateSigningKeyRequest(algorithm="HS256"), metadata=issuer.admin_metadata
        )
    time.sleep(0)  # keep the module's server quiet between tests


def _assertion(client_id: str, secret: str, audience: str, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": f"j-{now}-{id(overrides)}",
    }
    claims.update(overrides)
    return jwt.encode(claims, secret.encode(), algorithm="HS256")


def test_i2_http_assertion_refusals_are_invalid_client(issuer, tenant) -> None:
    url = f"{base_url(issuer)}/oauth/token"
    client = oauth_client(issuer, tenant.organization_id, 3)
    other = oauth_client(issuer, tenant.organization_id, 3)
    cid = client.credential.id

    def post(assertion: str) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
        return httpx.post(url, data=form, timeout=10)

    good = _assertion(cid, client.secret, url, jti="once-only")
    assert post(good).status_code == 200
    cases = {
        "replayed": good,
        "wrong aud": _assertion(cid, client.secret, "https://elsewhere/token"),
        "expired": _assertion(cid, client.secret, url, exp=int(time.time()) - 600),
        "another client's secret": _assertion(cid, other.secret, url),
    }
    for name, assertion in cases.items():
        response = post(assertion)
        assert (response.status_code, response.json()["error"]) == (401, "invalid_client"), name


def test_i5_rotation_under_load_refuses_no_token(issuer, tenant) -> None:
    """Tokens are issued and checked continuously while the signing key rotates twice: none is refused."""
    import asyncio

    key = create_credential(
        issuer, kind=API_KEY, organization_id=tenant.organization_id, name="load", permissions=["event.send"]
    )
    grant = auth_pb2.IssueTokenRequest(api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret))

    async def run() -> tuple[int, list[str]]:
        from watchword.v1 import auth_pb2_grpc

        failures: list[str] = []
        checked = 0
        issued: list[str] = []
        stop = asyncio.Event()
        async with grpc.aio.insecure_channel(issuer.address) as channel:
            auth = auth_pb2_grpc.AuthServiceStub(channel)

            async def worker() -> None:
                nonlocal checked
                while not stop.is_set():
                    token = (await auth.IssueToken(grant, timeout=10)).token.access_token
                    issued.append(token)
                    for candidate in (token, issued[len(issued) // 2]):  # a fresh one and an older one
                        http = common_pb2.HttpRequest(
                            headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {candidate}")]
                        )
                        request = auth_pb2.AuthenticateRequest(
                            credential=common_pb2.CredentialSource(http=http)
                        )
                        response = await auth.Authenticate(request, timeout=10)
                        checked += 1
                        if not response.HasField("principal"):
                            failures.append(response.refusal.reason)

            workers = [asyncio.create_task(worker()) for _ in range(4)]
            admin_md = issuer.admin_metadata
            from watchword.v1 import admin_pb2_grpc

            admin = admin_pb2_grpc.AdminServiceStub(channel)
            for _ in range(2):
                await asyncio.sleep(0.3)
                await admin.RotateSigningKey(
                    admin_pb2.RotateSigningKeyRequest(), metadata=admin_md, timeout=30
                )
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*workers)
        return checked, failures

    checked, failures = asyncio.run(run())
    assert checked > 20
    assert failures == []


# ---- RFC 8414 metadata a standard validator accepts; C9 assertion audiences (issue #12, section 9) ----

PUBLIC_ISSUER = "https://watchword.example"


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory):
    """A server behind a public https name: its metadata names that, not the loopback port."""
    env = {"WATCHWORD_TOKEN_ISSUER": PUBLIC_ISSUER, "WATCHWORD_PUBLIC_HTTP_URL": PUBLIC_ISSUER + "/"}
    with WatchwordProcess(tmp_path_factory.mktemp("public") / "data", env=env) as process:
        yield process


def _metadata(server: WatchwordProcess) -> dict:
    return httpx.get(f"{base_url(server)}/.well-known/oauth-authorization-server", timeout=10).json()


def test_i5_i2_metadata_passes_authlibs_rfc8414_validator(public) -> None:
    document = _metadata(public)
    AuthorizationServerMetadata(document).validate()
    assert document["issuer"] == PUBLIC_ISSUER
    assert document["token_endpoint"] == f"{PUBLIC_ISSUER}/oauth/token"
    assert document["jwks_uri"] == f"{PUBLIC_ISSUER}/.well-known/jwks.json"
    assert document["response_types_supported"] == ["none"]


def test_i5_development_metadata_lists_response_types_too(issuer) -> None:
    document = _metadata(issuer)
    AuthorizationServerMetadata(document).validate_response_types_supported()
    with pytest.raises(ValueError, match="https"):  # urn:watchword, allowed in development mode only
        AuthorizationServerMetadata(document).validate_issuer()


def _post_assertion(server: WatchwordProcess, assertion: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    return httpx.post(f"{base_url(server)}/oauth/token", data=form, timeout=10)


def test_c9_assertion_audience_may_be_the_issuer_or_the_published_token_endpoint(public) -> None:
    """draft-ietf-oauth-rfc7523bis: the issuer identifier; RFC 7523: the token endpoint URL, as the metadata
    publishes it (derived from public_http_url, nothing else to configure)."""
    tenant = make_tenant(public, "audiences")
    client = oauth_client(public, tenant.organization_id, 3)
    cid = client.credential.id
    published = _metadata(public)["token_endpoint"]
    for n, audience in enumerate([PUBLIC_ISSUER, published]):
        response = _post_assertion(public, _assertion(cid, client.secret, audience, jti=f"aud-{n}"))
        assert response.status_code == 200, (audience, response.text)
    both = _assertion(cid, client.secret, "", aud=[published, "https://other.example"], jti="aud-list")
    assert _post_assertion(public, both).status_code == 200
    for n, audience in enumerate(
        [
            "https://other.example",
            f"{base_url(public)}/oauth/token",  # where it listens, not what it publishes
            PUBLIC_ISSUER + "/",
            PUBLIC_ISSUER.upper(),
        ]
    ):
        response = _post_assertion(public, _assertion(cid, client.secret, audience, jti=f"bad-{n}"))
        assert (response.status_code, response.json()["error"]) == (401, "invalid_client"), audience


def test_c9_authlib_private_key_jwt_configured_from_the_metadata_alone(public) -> None:
    """As a standard client does: read the metadata, sign for its token_endpoint, post where it reaches."""
    tenant = make_tenant(public, "from-metadata")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"alg": "RS256"}
    client = oauth_client(public, tenant.organization_id, 4, public_jwk=json.dumps(public_jwk))
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    endpoint = _metadata(public)["token_endpoint"]
    session = OAuth2Client(
        client.credential.id, pem, token_endpoint_auth_method=PrivateKeyJWT(endpoint, alg="RS256")
    )
    token = _fetch(public, session)
    assert authenticate(public, token["access_token"]).HasField("principal")


def test_c9_the_default_endpoint_and_the_listening_url_are_audiences_without_configuration(tmp_path) -> None:
    """No token_endpoint_url, no public_http_url: the metadata's token endpoint (the listening address)
    and the issuer work as they come."""
    with WatchwordProcess(tmp_path / "data") as server:
        tenant = make_tenant(server, "defaults")
        client = oauth_client(server, tenant.organization_id, 3)
        published = _metadata(server)["token_endpoint"]
        assert published == f"{base_url(server)}/oauth/token"
        for n, audience in enumerate([published, "urn:watchword", "urn:watchword:token"]):
            assertion = _assertion(client.credential.id, client.secret, audience, jti=f"d-{n}")
            assert _post_assertion(server, assertion).status_code == 200, audience
