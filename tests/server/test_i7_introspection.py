"""I7: token introspection (RFC 7662) and revocation (RFC 7009) over HTTP, on the real server, with
authlib's OAuth2Client as the standard client for both and every client authentication method."""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf.timestamp_pb2 import Timestamp
from jwt.algorithms import RSAAlgorithm

from watchword import reasons, secret_format
from watchword.domain import CredentialKind
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.cli import run_cli
from support.observe import file_records, sample, scrape, wait_for_records
from support.server import WatchwordProcess
from support.tenants import API_KEY, APPLICATION_SECRET, STATIC_TOKEN, Tenant, create_credential, make_tenant
from support.tokens import watchword_token

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib announces a future move of its httpx integration
    from authlib.integrations.httpx_client import OAuth2Client
    from authlib.oauth2.rfc6749 import ResourceProtector
    from authlib.oauth2.rfc6749.requests import JsonRequest
    from authlib.oauth2.rfc6750 import InsufficientScopeError, InvalidTokenError
    from authlib.oauth2.rfc7523 import ClientSecretJWT, PrivateKeyJWT
    from authlib.oauth2.rfc7662 import IntrospectTokenValidator
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
OAUTH_CLIENT = common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT
CONNECTOR = common_pb2.CREDENTIAL_KIND_CONNECTOR
BASIC, POST, SECRET_JWT, PRIVATE_KEY_JWT = 1, 2, 3, 4
INACTIVE = {"active": False}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    directory = tmp_path_factory.mktemp("i7")
    env = {"WATCHWORD_AUDIT_LOG_FILE": str(directory / "audit.log")}
    with WatchwordProcess(directory / "data", env=env) as process:
        yield process


@pytest.fixture(scope="module")
def tenant(server: WatchwordProcess) -> Tenant:
    return make_tenant(server, "introspecting")


@pytest.fixture(scope="module")
def stranger(server: WatchwordProcess) -> Tenant:
    return make_tenant(server, "another organization")


def url(server: WatchwordProcess, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}{path}"


def oauth_client(
    server: WatchwordProcess,
    organization_id: str,
    method: int = BASIC,
    permissions: tuple[str, ...] = ("token.introspect", "token.revoke"),
    **fields: object,
) -> admin_pb2.CreateCredentialResponse:
    return create_credential(
        server,
        kind=OAUTH_CLIENT,
        organization_id=organization_id,
        name="resource server",
        permissions=list(permissions),
        client_auth_method=method,
        **fields,
    )


def session(client: admin_pb2.CreateCredentialResponse, method: str = "client_secret_basic") -> OAuth2Client:
    return OAuth2Client(
        client.credential.id,
        client.secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
    )


@pytest.fixture(scope="module")
def caller(server: WatchwordProcess, tenant: Tenant) -> admin_pb2.CreateCredentialResponse:
    return oauth_client(server, tenant.organization_id)


def introspect(
    server: WatchwordProcess, caller: admin_pb2.CreateCredentialResponse, token: str, **params: str
):
    with session(caller) as client:
        return client.introspect_token(url(server, "/oauth/introspect"), token=token, **params)


def revoke(server: WatchwordProcess, caller: admin_pb2.CreateCredentialResponse, token: str, **params: str):
    with session(caller) as client:
        return client.revoke_token(url(server, "/oauth/revoke"), token=token, **params)


def answer(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    return response.json()


def authenticate(server: WatchwordProcess, token: str) -> auth_pb2.AuthenticateResponse:
    source = common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token))
    return server.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=source), timeout=10)


def issue(server: WatchwordProcess, **grant: object) -> auth_pb2.TokenResponse:
    response = server.auth().IssueToken(auth_pb2.IssueTokenRequest(**grant), timeout=10)
    assert response.HasField("token"), response
    return response.token


def api_key(
    server: WatchwordProcess, organization_id: str, **fields: object
) -> admin_pb2.CreateCredentialResponse:
    return create_credential(
        server,
        kind=API_KEY,
        organization_id=organization_id,
        name="key",
        permissions=["event.send", "application.list"],
        **fields,
    )


def exchanged(server: WatchwordProcess, key: admin_pb2.CreateCredentialResponse) -> auth_pb2.TokenResponse:
    return issue(server, api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret))


def admin(server: WatchwordProcess):
    return server.admin()


# ---- the metadata ----


def test_i7_metadata_advertises_both_endpoints(server, monkeypatch) -> None:
    document = httpx.get(url(server, "/.well-known/oauth-authorization-server"), timeout=10).json()
    assert document["introspection_endpoint"] == url(server, "/oauth/introspect")
    assert document["revocation_endpoint"] == url(server, "/oauth/revoke")
    for name in ("introspection", "revocation"):
        assert document[f"{name}_endpoint_auth_methods_supported"] == [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
        ]
        assert "RS256" in document[f"{name}_endpoint_auth_signing_alg_values_supported"]
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # a loopback http URL, as in development
    metadata = AuthorizationServerMetadata(document)
    for name in ("introspection", "revocation"):
        getattr(metadata, f"validate_{name}_endpoint")()
        getattr(metadata, f"validate_{name}_endpoint_auth_methods_supported")()
        getattr(metadata, f"validate_{name}_endpoint_auth_signing_alg_values_supported")()
    assert {"token.introspect", "token.revoke"} <= set(document["scopes_supported"])


# ---- introspection: every kind of token, active ----


def test_i7_authlib_introspects_a_watchword_token_from_an_api_key(server, tenant, caller) -> None:
    key = api_key(server, tenant.organization_id)
    token = exchanged(server, key)
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    found = answer(introspect(server, caller, token.access_token, token_type_hint="access_token"))
    assert found == {
        "active": True,
        "token_type": "Bearer",
        "scope": "application.list event.send",
        "client_id": key.credential.id,
        "sub": key.credential.id,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "iss": "urn:watchword",
        "aud": "urn:watchword:api",
        "jti": token.token_id,
        "organization_id": tenant.organization_id,
        "credential_id": key.credential.id,
        "credential_kind": "watchword_token",
    }
    assert "secret_version" in claims  # in the token, never in the answer


def test_i7_introspects_client_credentials_and_subject_tokens(server, tenant, caller) -> None:
    other = oauth_client(server, tenant.organization_id, POST, permissions=("event.send",))
    auth = auth_pb2.ClientAuthentication(client_id=other.credential.id, client_secret=other.secret)
    client_token = issue(server, client_credentials=auth_pb2.ClientCredentialsGrant(client=auth))
    found = answer(introspect(server, caller, client_token.access_token))
    assert (found["active"], found["client_id"], found["scope"]) == (True, other.credential.id, "event.send")
    assert found["jti"] == client_token.token_id

    connector = create_credential(
        server, kind=CONNECTOR, organization_id=tenant.organization_id, name="hull", permissions=["track"]
    )
    me = common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id="u-1")
    grant = auth_pb2.SubjectTokenGrant(
        connector_id=connector.credential.id, connector_secret=connector.secret, subject=me
    )
    subject_token = issue(server, subject_token=grant)
    found = answer(introspect(server, caller, subject_token.access_token, token_type_hint="refresh_token"))
    assert found["active"] is True
    assert (found["subject_type"], found["subject_id"], found["sub"]) == ("user", "u-1", "user:u-1")
    assert (found["credential_kind"], found["scope"]) == ("subject_jwt", "track")


@pytest.mark.parametrize(
    ("kind", "label", "fields"),
    [
        (API_KEY, "api_key", {"permissions": ["event.send"]}),
        (STATIC_TOKEN, "static_token", {"permissions": ["event.list"]}),
        (CONNECTOR, "connector", {"permissions": ["track", "traits"]}),
        (APPLICATION_SECRET, "application_secret", {}),
    ],
)
def test_i7_introspects_each_opaque_secret_without_repeating_it(server, tenant, caller, kind, label, fields):
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    stamp = Timestamp()
    stamp.FromDatetime(expires)
    if kind == APPLICATION_SECRET:
        fields = {"application_id": tenant.application_id}
    created = create_credential(
        server, kind=kind, organization_id=tenant.organization_id, name=label, expires_at=stamp, **fields
    )
    response = introspect(server, caller, created.secret, token_type_hint="api_key")  # an unknown hint
    found = answer(response)
    assert created.secret not in response.text
    assert found["active"] is True
    assert found["credential_kind"] == label
    assert found["credential_id"] == found["sub"] == found["client_id"] == created.credential.id
    assert found["organization_id"] == tenant.organization_id
    assert found["exp"] == int(expires.timestamp())
    assert found["iat"] <= time.time()
    assert "token_type" not in found
    assert "jti" not in found
    if kind == APPLICATION_SECRET:
        assert found["application_id"] == tenant.application_id
        assert "application.get" in found["scope"].split()
    else:
        assert found["scope"] == " ".join(sorted(fields["permissions"]))


# ---- introspection: inactive, whatever the reason, and nothing else ----


def _expired_api_key(server: WatchwordProcess, organization_id: str) -> str:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
    key = api_key(server, organization_id, expires_at=stamp)
    time.sleep(1.2)
    return key.secret


def inactive_tokens(server: WatchwordProcess, tenant: Tenant, stranger: Tenant) -> dict[str, str]:
    """One token per way of not being active in `tenant`'s organization."""
    data: Path = server.data_dir
    revoked = exchanged(server, api_key(server, tenant.organization_id))
    admin(server).RevokeToken(
        admin_pb2.RevokeTokenRequest(token_id=revoked.token_id), metadata=server.admin_metadata
    )
    deactivated = api_key(server, tenant.organization_id)
    admin(server).DeactivateCredential(
        admin_pb2.DeactivateCredentialRequest(id=deactivated.credential.id), metadata=server.admin_metadata
    )
    unknown_id = "0123456789ABCDEF"
    own_client = oauth_client(server, tenant.organization_id, POST)
    return {
        "unknown secret": secret_format.mint(CredentialKind.API_KEY, unknown_id),
        "wrong secret of a known key": secret_format.mint(
            CredentialKind.API_KEY, api_key(server, tenant.organization_id).credential.id
        ),
        "malformed": "not a token at all",
        "malformed jwt": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
        "expired token": watchword_token(data, tenant.organization_id, exp=int(time.time()) - 600),
        "forged token": watchword_token(
            data, tenant.organization_id, key=ec.generate_private_key(ec.SECP256R1())
        ),
        "revoked token": revoked.access_token,
        "deactivated key": deactivated.secret,
        "token of a deactivated key": exchanged(server, api_key(server, tenant.organization_id)).access_token,
        "expired key": _expired_api_key(server, tenant.organization_id),
        "another organization's key": api_key(server, stranger.organization_id).secret,
        "another organization's token": exchanged(
            server, api_key(server, stranger.organization_id)
        ).access_token,
        "an oauth client secret": own_client.secret,
        "a tenant's own token (C4)": _tenant_token(server, tenant),
    }


def _tenant_token(server: WatchwordProcess, tenant: Tenant) -> str:
    """A valid C4 token of the caller's organization: Authenticate accepts it, introspection does not
    cover it (the tenant signed it, not Watchword)."""
    signing = create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET,
        organization_id=tenant.organization_id,
        name="tenant",
        permissions=["object.publish"],
    )
    now = int(time.time())
    claims = {
        "sub": "svc",
        "tnd": tenant.organization_id,
        "iss": "tenant.example",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    headers = {"kid": signing.credential.id}
    token = jwt.encode(
        claims | {"permissions": ["object.publish"]}, signing.secret, algorithm="HS256", headers=headers
    )
    assert authenticate(server, token).principal.kind == common_pb2.CREDENTIAL_KIND_TENANT_JWT
    return token


def test_i7_inactive_is_active_false_and_nothing_else(server, tenant, stranger, caller) -> None:
    tokens = inactive_tokens(server, tenant, stranger)
    # The key behind this exchanged token is deactivated only now: the token must die with it (I6).
    minted_from = jwt.decode(tokens["token of a deactivated key"], options={"verify_signature": False})
    admin(server).DeactivateCredential(
        admin_pb2.DeactivateCredentialRequest(id=minted_from["credential_id"]), metadata=server.admin_metadata
    )
    answers = {}
    for name, token in tokens.items():
        response = introspect(server, caller, token)
        answers[name] = (answer(response), response.content)
    assert {name: found for name, (found, _) in answers.items()} == dict.fromkeys(tokens, INACTIVE)
    assert {body for _, body in answers.values()} == {b'{"active":false}'}  # byte for byte alike


# ---- the caller: C9 client authentication and the grant ----


def test_i7_every_client_authentication_method_reaches_both_endpoints(server, tenant) -> None:
    key = api_key(server, tenant.organization_id)
    introspect_url, revoke_url = url(server, "/oauth/introspect"), url(server, "/oauth/revoke")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"alg": "RS256"}
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    clients = {
        "client_secret_basic": session(oauth_client(server, tenant.organization_id, BASIC)),
        "client_secret_post": session(
            oauth_client(server, tenant.organization_id, POST), "client_secret_post"
        ),
    }
    secret_jwt = oauth_client(server, tenant.organization_id, SECRET_JWT)
    key_jwt = oauth_client(server, tenant.organization_id, PRIVATE_KEY_JWT, public_jwk=json.dumps(public_jwk))
    # authlib signs for the URL it posts to (no endpoint given): each endpoint's own URL is an audience.
    for name, client_id, secret, method in (
        ("client_secret_jwt", secret_jwt.credential.id, secret_jwt.secret, ClientSecretJWT(alg="HS256")),
        ("private_key_jwt", key_jwt.credential.id, pem, PrivateKeyJWT(alg="RS256")),
    ):
        clients[name] = OAuth2Client(
            client_id, secret, token_endpoint_auth_method=method, revocation_endpoint_auth_method=method
        )
    for name, client in clients.items():
        token = exchanged(server, key)
        with client:
            assert answer(client.introspect_token(introspect_url, token=key.secret))["active"] is True, name
            assert client.revoke_token(revoke_url, token=token.access_token).status_code == 200, name
        assert authenticate(server, token.access_token).refusal.reason == reasons.TOKEN_REVOKED, name


def test_i7_a_client_without_the_grant_is_unauthorized_client(server, tenant) -> None:
    key = api_key(server, tenant.organization_id)
    only_revoke = oauth_client(server, tenant.organization_id, permissions=("token.revoke",))
    only_introspect = oauth_client(server, tenant.organization_id, permissions=("token.introspect",))
    refused = introspect(server, only_revoke, key.secret)
    assert (refused.status_code, refused.json()["error"]) == (403, "unauthorized_client")
    assert "token.introspect" in refused.json()["error_description"]
    assert refused.headers["cache-control"] == "no-store"
    refused = revoke(server, only_introspect, key.secret)
    assert (refused.status_code, refused.json()["error"]) == (403, "unauthorized_client")
    assert authenticate(server, key.secret).HasField("principal")  # nothing was revoked


def test_i7_a_client_that_does_not_authenticate_is_invalid_client(server, tenant, caller) -> None:
    key = api_key(server, tenant.organization_id)
    impostors = {
        "wrong secret": (
            caller.credential.id,
            secret_format.mint(CredentialKind.OAUTH_CLIENT, caller.credential.id),
        ),
        "unknown client": (
            "0123456789ABCDEF",
            secret_format.mint(CredentialKind.OAUTH_CLIENT, "0123456789ABCDEF"),
        ),
        "an api key as client": (key.credential.id, key.secret),
    }
    for name, (client_id, secret) in impostors.items():
        for path in ("/oauth/introspect", "/oauth/revoke"):
            response = httpx.post(
                url(server, path), data={"token": key.secret}, auth=(client_id, secret), timeout=10
            )
            assert response.status_code == 401, (name, path)
            assert response.json() == {
                "error": "invalid_client",
                "error_description": "client authentication failed",
            }
            assert response.headers["www-authenticate"].startswith("Basic")
    nobody = httpx.post(url(server, "/oauth/introspect"), data={"token": key.secret}, timeout=10)
    assert (nobody.status_code, nobody.json()["error"]) == (401, "invalid_client")
    assert "www-authenticate" not in nobody.headers
    assert authenticate(server, key.secret).HasField("principal")


# ---- revocation ----


def test_i7_revoking_a_watchword_token_is_refused_by_authenticate_at_once(server, tenant, caller) -> None:
    key = api_key(server, tenant.organization_id)
    first, second = exchanged(server, key), exchanged(server, key)
    assert authenticate(server, first.access_token).HasField("principal")  # cached as verified
    response = revoke(server, caller, first.access_token, token_type_hint="access_token")
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["cache-control"] == "no-store"
    assert authenticate(server, first.access_token).refusal.reason == reasons.TOKEN_REVOKED
    assert answer(introspect(server, caller, first.access_token)) == INACTIVE
    assert authenticate(server, second.access_token).HasField("principal")  # only that one
    assert revoke(server, caller, first.access_token).status_code == 200  # again: still fine


def test_i7_revoking_an_opaque_secret_deactivates_its_credential(server, tenant, caller) -> None:
    key = api_key(server, tenant.organization_id)
    minted = exchanged(server, key)
    assert authenticate(server, key.secret).HasField("principal")
    assert revoke(server, caller, key.secret).status_code == 200
    assert authenticate(server, key.secret).refusal.reason == reasons.CREDENTIAL_DEACTIVATED
    assert authenticate(server, minted.access_token).refusal.reason == reasons.CREDENTIAL_DEACTIVATED
    stored = admin(server).GetCredential(
        admin_pb2.GetCredentialRequest(id=key.credential.id), metadata=server.admin_metadata
    )
    assert stored.HasField("deactivated_at")


def test_i7_unknown_and_foreign_tokens_revoke_nothing_and_say_200(server, tenant, stranger, caller) -> None:
    theirs_key = api_key(server, stranger.organization_id)
    theirs_token = exchanged(server, theirs_key)
    for token in (
        theirs_key.secret,
        theirs_token.access_token,
        secret_format.mint(CredentialKind.API_KEY, "0123456789ABCDEF"),
        "not a token at all",
    ):
        response = revoke(server, caller, token)
        assert (response.status_code, response.content) == (200, b""), token
    assert authenticate(server, theirs_key.secret).HasField("principal")
    assert authenticate(server, theirs_token.access_token).HasField("principal")


def test_i7_kinds_never_revoked_here_are_unsupported_token_type(server, tenant, caller) -> None:
    foreign_jwt = jwt.encode({"iss": "https://idp.example", "sub": "u"}, "k" * 32, algorithm="HS256")
    client_secret = oauth_client(server, tenant.organization_id, POST).secret
    for token in (foreign_jwt, client_secret, server.admin_token):
        response = revoke(server, caller, token)
        assert (response.status_code, response.json()["error"]) == (400, "unsupported_token_type")
    assert authenticate(server, server.admin_token).refusal.reason  # admin tokens never authenticate here
    assert admin(server).ListOrganizations(
        admin_pb2.ListOrganizationsRequest(), metadata=server.admin_metadata
    )


# ---- bad input: a clean 400 invalid_request, never a traceback ----


def test_i7_bad_requests_are_invalid_request(server, caller) -> None:
    auth = (caller.credential.id, caller.secret)
    form = "application/x-www-form-urlencoded"
    cases = {
        "missing token": {"data": {"token_type_hint": "access_token"}},
        "empty token": {"data": {"token": ""}},
        "json body": {"json": {"token": "x"}},
        "no content type": {"content": b"token=x"},
        "huge body": {"content": b"token=" + b"a" * 70_000, "headers": {"content-type": form}},
        "not utf-8": {"content": b"token=%ff%fe\xff", "headers": {"content-type": form}},
        "latin-1 charset": {"content": b"token=x", "headers": {"content-type": form + "; charset=latin-1"}},
        "repeated token": {"content": b"token=a&token=b", "headers": {"content-type": form}},
    }
    for path in ("/oauth/introspect", "/oauth/revoke"):
        for name, request in cases.items():
            response = httpx.post(url(server, path), auth=auth, timeout=10, **request)
            assert response.status_code == 400, (path, name, response.text)
            assert response.json()["error"] == "invalid_request", (path, name)
            assert response.headers["cache-control"] == "no-store"
        assert httpx.get(url(server, path), timeout=10).status_code == 405
    assert "Traceback" not in "".join(server.output)


# ---- audit and metrics ----


def test_i7_every_call_is_audited_without_the_token_and_counted(server, tenant, stranger, caller) -> None:
    read = file_records(server.data_dir.parent / "audit.log")

    def mine(record: dict) -> bool:
        return record["rpc"] in ("POST /oauth/introspect", "POST /oauth/revoke")

    time.sleep(0.2)  # earlier tests' records are written
    earlier = len([record for record in read() if mine(record)])
    key = api_key(server, tenant.organization_id)
    theirs = api_key(server, stranger.organization_id)
    before = scrape(server.metrics_port)
    introspect(server, caller, key.secret)
    introspect(server, caller, theirs.secret)
    revoke(server, caller, key.secret)
    httpx.post(
        url(server, "/oauth/revoke"), data={"token": "x"}, auth=(caller.credential.id, "wrong"), timeout=10
    )

    records = wait_for_records(read, mine, count=earlier + 4)
    text = json.dumps(records)
    for secret in (key.secret, theirs.secret, caller.secret):
        assert secret not in text
    outcomes = [(r["rpc"], r["result"], r["reason"], r["what"].get("detail", "")) for r in records[-4:]]
    assert outcomes == [
        ("POST /oauth/introspect", "allow", "active", ""),
        ("POST /oauth/introspect", "allow", "inactive", reasons.RESOURCE_NOT_IN_SCOPE),
        ("POST /oauth/revoke", "allow", "deactivated", ""),
        ("POST /oauth/revoke", "deny", "invalid_client", ""),
    ]
    first = records[-4]
    assert first["who"]["id"] == caller.credential.id
    assert first["who"]["organization_id"] == tenant.organization_id
    assert first["what"]["token"]["id"] == key.credential.id
    after = scrape(server.metrics_port)
    labels = {"rpc": "POST /oauth/introspect", "kind": "oauth_client", "result": "allow", "reason": "active"}
    assert (
        sample(after, "watchword_decisions_total", **labels)
        == sample(before, "watchword_decisions_total", **labels) + 1
    )


# ---- the grant through the CLI ----


def test_i7_a_client_granted_through_the_cli_introspects(server, tenant) -> None:
    flags = ["--kind", "oauth-client", "--org", tenant.organization_id, "--name", "gateway"]
    flags += ["--client-auth-method", "client_secret_post", "--permission", "token.introspect"]
    settings = {"WATCHWORD_ADDRESS": server.address, "WATCHWORD_ADMIN_TOKEN": server.admin_token}
    done = run_cli("admin", "credential", "create", *flags, settings=settings)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["credential"]["permissions"] == ["token.introspect"]
    key = api_key(server, tenant.organization_id)
    with OAuth2Client(
        created["credential"]["id"], created["secret"], token_endpoint_auth_method="client_secret_post"
    ) as client:
        found = answer(client.introspect_token(url(server, "/oauth/introspect"), token=key.secret))
    assert (found["active"], found["credential_id"]) == (True, key.credential.id)


# ---- a peer's expectations: a resource server built on authlib's RFC 7662 validator ----


def test_i7_authlibs_introspection_resource_protector_accepts_and_refuses_as_watchword_says(
    server, tenant, caller
) -> None:
    """What a resource server does with the answers: authlib's ResourceProtector and its RFC 7662
    IntrospectTokenValidator, asking Watchword's endpoint, decide a request's bearer token and scope."""

    class WatchwordIntrospection(IntrospectTokenValidator):
        def introspect_token(self, token_string: str) -> dict:
            response = introspect(server, caller, token_string, token_type_hint="access_token")
            response.raise_for_status()
            return response.json()

    protector = ResourceProtector()
    protector.register_token_validator(WatchwordIntrospection(realm="orders"))

    def protect(token: str, scope: str) -> dict:
        request = JsonRequest("POST", "https://orders.example/events", {"Authorization": f"Bearer {token}"})
        return protector.validate_request([scope], request)

    key = api_key(server, tenant.organization_id)
    token = exchanged(server, key).access_token
    assert protect(token, "event.send")["client_id"] == key.credential.id
    assert protect(key.secret, "application.list")["credential_kind"] == "api_key"
    with pytest.raises(InsufficientScopeError):
        protect(token, "event.list")
    assert revoke(server, caller, token).status_code == 200
    with pytest.raises(InvalidTokenError):
        protect(token, "event.send")
    with pytest.raises(InvalidTokenError):
        protect(api_key(server, tenant.organization_id).secret[:-1] + "x", "event.send")


def _subject_token(server: WatchwordProcess, tenant: Tenant) -> str:
    connector = create_credential(
        server, kind=CONNECTOR, organization_id=tenant.organization_id, name="hull", permissions=["track"]
    )
    grant = auth_pb2.SubjectTokenGrant(
        connector_id=connector.credential.id,
        connector_secret=connector.secret,
        subject=common_pb2.Subject(type=common_pb2.Subject.TYPE_ACCOUNT, id="a-1"),
    )
    return issue(server, subject_token=grant).access_token


def _client_credentials_token(server: WatchwordProcess, tenant: Tenant) -> str:
    other = oauth_client(server, tenant.organization_id, POST, permissions=("event.send",))
    auth = auth_pb2.ClientAuthentication(client_id=other.credential.id, client_secret=other.secret)
    return issue(server, client_credentials=auth_pb2.ClientCredentialsGrant(client=auth)).access_token


def _opaque(kind: int, **fields: object):
    def made(server: WatchwordProcess, tenant: Tenant) -> str:
        if kind == APPLICATION_SECRET:
            fields["application_id"] = tenant.application_id
        return create_credential(
            server, kind=kind, organization_id=tenant.organization_id, name="revocable", **fields
        ).secret

    return made


@pytest.mark.parametrize(
    ("make", "refusal"),
    [
        (_subject_token, reasons.TOKEN_REVOKED),
        (_client_credentials_token, reasons.TOKEN_REVOKED),
        (_opaque(STATIC_TOKEN, permissions=["event.list"]), reasons.CREDENTIAL_DEACTIVATED),
        (_opaque(APPLICATION_SECRET), reasons.CREDENTIAL_DEACTIVATED),
        (_opaque(CONNECTOR, permissions=["track"]), reasons.CREDENTIAL_DEACTIVATED),
    ],
    ids=["subject token", "client credentials token", "static token", "application secret", "connector"],
)
def test_i7_authlib_revokes_every_kind_and_authenticate_refuses_it_next(
    server, tenant, caller, make, refusal
) -> None:
    token = make(server, tenant)
    assert answer(introspect(server, caller, token))["active"] is True
    response = revoke(server, caller, token)
    assert (response.status_code, response.content) == (200, b"")
    assert authenticate(server, token).refusal.reason == refusal
    assert answer(introspect(server, caller, token)) == INACTIVE
