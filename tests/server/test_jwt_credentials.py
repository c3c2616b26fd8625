"""JWT credentials through the real server: C4 tenant-signed, C7 subject-scoped, C8 Watchword's own."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from watchword import reasons
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.server import WatchwordProcess
from support.tenants import API_KEY, create_credential, make_tenant
from support.tokens import watchword_token

TENANT_SECRET = common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET
CONNECTOR = common_pb2.CREDENTIAL_KIND_CONNECTOR


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory):
    env = {"WATCHWORD_AUTH_COOKIE_NAME": "hk_token"}
    with WatchwordProcess(tmp_path_factory.mktemp("jwt") / "data", env=env) as process:
        yield process


def authenticate(server: WatchwordProcess, *headers: tuple[str, str]) -> auth_pb2.AuthenticateResponse:
    http = common_pb2.HttpRequest(
        method="POST", headers=[common_pb2.KeyValue(name=n, value=v) for n, v in headers]
    )
    return server.auth().Authenticate(
        auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(http=http)), timeout=10
    )


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


def reason(response: auth_pb2.AuthenticateResponse) -> str:
    assert response.WhichOneof("result") == "refusal", response
    return response.refusal.reason


# ---- C4 ----


@pytest.fixture(scope="module")
def tenant_world(jwt_server):
    tenant = make_tenant(jwt_server, "hivekit-tenant")
    other = make_tenant(jwt_server, "other-tenant")
    secret = create_credential(
        jwt_server,
        kind=TENANT_SECRET,
        organization_id=tenant.organization_id,
        name="signing",
        permissions=["object.publish", "object.read"],
    )
    foreign = create_credential(
        jwt_server, kind=TENANT_SECRET, organization_id=other.organization_id, name="theirs"
    )
    return tenant, other, secret, foreign


def tenant_token(secret: str, kid: str | None, org: str, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "sub": "service",
        "tnd": org,
        "iat": now,
        "exp": now + 300,
        "iss": "platform.tenant.example",
        "jti": uuid.uuid4().hex,
        "permissions": ["object.publish", "event.send"],
        "data_provider_patterns": ["truck-*"],
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    algorithm = str(claims.pop("_alg", "HS256"))
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, secret.encode(), algorithm=algorithm, headers=headers)


def test_c4_tenant_token_verifies_with_permissions_capped_by_the_secret(jwt_server, tenant_world) -> None:
    tenant, _, secret, _ = tenant_world
    principal = authenticate(
        jwt_server, bearer(tenant_token(secret.secret, secret.credential.id, tenant.organization_id))
    ).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_TENANT_JWT
    assert principal.organization_id == tenant.organization_id
    assert principal.credential_id == secret.credential.id
    assert list(principal.permissions) == ["object.publish"]  # event.send is above the secret's ceiling (S4)
    assert list(principal.data_provider_patterns) == ["truck-*"]
    assert principal.issuer == "platform.tenant.example"
    assert principal.token_id


def test_c4_t3_t6_tenant_token_in_a_cookie_and_bare(jwt_server, tenant_world) -> None:
    tenant, _, secret, _ = tenant_world
    token = tenant_token(secret.secret, secret.credential.id, tenant.organization_id)
    assert (
        authenticate(jwt_server, ("Cookie", f"hk_token={token}")).principal.transport
        == common_pb2.TRANSPORT_COOKIE
    )
    bare = jwt_server.auth().Authenticate(
        auth_pb2.AuthenticateRequest(
            credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token))
        ),
        timeout=10,
    )
    assert bare.principal.transport == common_pb2.TRANSPORT_BARE


def test_c4_refusals(jwt_server, tenant_world) -> None:
    tenant, _, secret, foreign = tenant_world
    org, kid = tenant.organization_id, secret.credential.id
    cases = {
        # Unknown key and wrong signature answer alike (issue #12): nobody learns which kids exist.
        "no kid": (tenant_token(secret.secret, None, org), reasons.TOKEN_SIGNATURE_INVALID),
        "unknown kid": (
            tenant_token(secret.secret, "0123456789abcdef", org),
            reasons.TOKEN_SIGNATURE_INVALID,
        ),
        "kid path": (tenant_token(secret.secret, "../../etc/passwd", org), reasons.TOKEN_SIGNATURE_INVALID),
        "another org's kid": (
            tenant_token(foreign.secret, foreign.credential.id, org),
            reasons.TOKEN_SIGNATURE_INVALID,
        ),
        "HS384 not allowed": (
            tenant_token(secret.secret, kid, org, _alg="HS384"),
            reasons.TOKEN_ALGORITHM_NOT_ALLOWED,
        ),
        "wrong secret": (tenant_token(foreign.secret, kid, org), reasons.TOKEN_SIGNATURE_INVALID),
        "expired": (tenant_token(secret.secret, kid, org, exp=int(time.time()) - 120), reasons.TOKEN_EXPIRED),
        "not yet valid": (
            tenant_token(secret.secret, kid, org, nbf=int(time.time()) + 600),
            reasons.TOKEN_NOT_YET_VALID,
        ),
        "no jti": (tenant_token(secret.secret, kid, org, jti=None), reasons.TOKEN_CLAIMS_INVALID),
        "permissions not a list": (
            tenant_token(secret.secret, kid, org, permissions="object.publish"),
            reasons.TOKEN_CLAIMS_INVALID,
        ),
    }
    for name, (token, expected) in cases.items():
        assert reason(authenticate(jwt_server, bearer(token))) == expected, name


def test_c4_deactivated_signing_secret_refuses_its_tokens_at_once(jwt_server) -> None:
    tenant = make_tenant(jwt_server, "deactivating-tenant")
    secret = create_credential(
        jwt_server, kind=TENANT_SECRET, organization_id=tenant.organization_id, name="s"
    )
    token = tenant_token(secret.secret, secret.credential.id, tenant.organization_id)
    assert authenticate(jwt_server, bearer(token)).HasField("principal")
    jwt_server.admin().DeactivateCredential(
        admin_pb2.DeactivateCredentialRequest(id=secret.credential.id), metadata=jwt_server.admin_metadata
    )
    assert reason(authenticate(jwt_server, bearer(token))) == reasons.CREDENTIAL_DEACTIVATED


def test_c4_rotation_overlap_keeps_tokens_of_the_previous_secret(jwt_server) -> None:
    tenant = make_tenant(jwt_server, "rotating-tenant")
    secret = create_credential(
        jwt_server, kind=TENANT_SECRET, organization_id=tenant.organization_id, name="s"
    )
    old_token = tenant_token(secret.secret, secret.credential.id, tenant.organization_id)
    admin, md = jwt_server.admin(), jwt_server.admin_metadata
    rotated = admin.RotateCredential(
        admin_pb2.RotateCredentialRequest(id=secret.credential.id, overlap_seconds=300), metadata=md
    )
    new_token = tenant_token(rotated.secret, secret.credential.id, tenant.organization_id)
    assert authenticate(jwt_server, bearer(old_token)).HasField("principal")
    assert authenticate(jwt_server, bearer(new_token)).HasField("principal")
    admin.RotateCredential(admin_pb2.RotateCredentialRequest(id=secret.credential.id), metadata=md)
    assert reason(authenticate(jwt_server, bearer(new_token))) == reasons.TOKEN_SIGNATURE_INVALID


def test_c4_tenant_signing_secrets_are_sealed_not_stored_in_clear(jwt_server, tenant_world) -> None:
    _, _, secret, _ = tenant_world
    with sqlite3.connect(jwt_server.data_dir / "watchword.db") as connection:
        dump = "\n".join(connection.iterdump())
    assert secret.secret not in dump


# ---- C7 ----


@pytest.fixture(scope="module")
def connector(jwt_server):
    tenant = make_tenant(jwt_server, "hull-org")
    return tenant, create_credential(
        jwt_server,
        kind=CONNECTOR,
        organization_id=tenant.organization_id,
        name="hull",
        permissions=["track", "traits", "alias"],
    )


def subject_token(secret: str, iss: str | None, **claims: object) -> str:
    now = int(time.time())
    body = {"iat": now, "exp": now + 300, "io.hull.asUser": {"external_id": "user-42"}, **claims}
    if iss:
        body["iss"] = iss
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret.encode(), algorithm="HS256")


def test_c7_t4_subject_token_with_the_connector_id(jwt_server, connector) -> None:
    tenant, created = connector
    token = subject_token(created.secret, created.credential.id)
    principal = authenticate(
        jwt_server, ("Hull-App-Id", created.credential.id), ("Hull-Access-Token", token)
    ).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_SUBJECT_JWT
    assert principal.subject.type == common_pb2.Subject.TYPE_USER
    assert principal.subject.id == "user-42"
    assert principal.organization_id == tenant.organization_id
    assert sorted(principal.permissions) == ["alias", "track", "traits"]


def test_c7_account_subject_and_token_alone_names_its_connector_by_iss(jwt_server, connector) -> None:
    _, created = connector
    token = subject_token(
        created.secret,
        created.credential.id,
        **{"io.hull.asUser": None, "io.hull.asAccount": {"id": "acct-7"}},
    )
    principal = authenticate(jwt_server, ("Hull-Access-Token", token)).principal
    assert (principal.subject.type, principal.subject.id) == (common_pb2.Subject.TYPE_ACCOUNT, "acct-7")


def test_c7_refusals(jwt_server, connector) -> None:
    _, created = connector
    cid = created.credential.id
    pair = lambda token, client=cid: (("Hull-App-Id", client), ("Hull-Access-Token", token))  # noqa: E731
    other = create_credential(
        jwt_server, kind=CONNECTOR, organization_id=connector[0].organization_id, name="other"
    )
    cases = {
        "wrong secret": (pair(subject_token(other.secret, cid)), reasons.TOKEN_SIGNATURE_INVALID),
        "iss of another connector": (
            pair(subject_token(created.secret, other.credential.id)),
            reasons.TOKEN_CLAIMS_INVALID,
        ),
        "two subjects": (
            pair(subject_token(created.secret, cid, **{"io.hull.asAccount": {"id": "a"}})),
            reasons.TOKEN_CLAIMS_INVALID,
        ),
        "no subject": (
            pair(subject_token(created.secret, cid, **{"io.hull.asUser": None})),
            reasons.TOKEN_CLAIMS_INVALID,
        ),
        "expired": (
            pair(subject_token(created.secret, cid, exp=int(time.time()) - 300)),
            reasons.TOKEN_EXPIRED,
        ),
        "no exp": (pair(subject_token(created.secret, cid, exp=None)), reasons.TOKEN_CLAIMS_INVALID),
        "unknown connector": (
            pair(subject_token(created.secret, None), "0123456789abcdef"),
            reasons.TOKEN_SIGNATURE_INVALID,  # as a wrong signature (issue #12)
        ),
    }
    for name, (headers, expected) in cases.items():
        assert reason(authenticate(jwt_server, *headers)) == expected, name
    # As a Bearer token, an HS256 JWT is a tenant token: the connector's secret gives it no reach there.
    assert (
        reason(authenticate(jwt_server, bearer(subject_token(created.secret, cid))))
        == reasons.TOKEN_SIGNATURE_INVALID
    )


def test_c7_t7_batch_entries_each_carry_their_own_subject_token(jwt_server, connector) -> None:
    _, created = connector
    entries = []
    for user in ("u1", "u2", "u3"):
        token = subject_token(
            created.secret, created.credential.id, **{"io.hull.asUser": {"external_id": user}}
        )
        http = common_pb2.HttpRequest(
            method="POST", headers=[common_pb2.KeyValue(name="Hull-Access-Token", value=token)]
        )
        entries.append(
            auth_pb2.AuthorizeRequest(credential=common_pb2.CredentialSource(http=http), action="track")
        )
    entries.append(
        auth_pb2.AuthorizeRequest(
            credential=common_pb2.CredentialSource(
                http=common_pb2.HttpRequest(
                    headers=[common_pb2.KeyValue(name="Hull-Access-Token", value="forged.jwt.x")]
                )
            ),
            action="track",
        )
    )
    results = (
        jwt_server.auth().AuthorizeBatch(auth_pb2.AuthorizeBatchRequest(entries=entries), timeout=10).results
    )
    assert [r.principal.subject.id for r in results[:3]] == ["u1", "u2", "u3"]
    assert results[3].refusal.reason == reasons.TOKEN_MALFORMED


# ---- C8 ----


def own_token(server: WatchwordProcess, org: str, **options: object) -> str:
    return watchword_token(server.data_dir, org, **options)


def test_c8_watchword_token_verifies_with_the_published_key(jwt_server) -> None:
    tenant = make_tenant(jwt_server, "own-tokens")
    principal = authenticate(jwt_server, bearer(own_token(jwt_server, tenant.organization_id))).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_WATCHWORD_TOKEN
    assert principal.organization_id == tenant.organization_id
    assert sorted(principal.permissions) == ["application.list", "event.send"]
    jwks = jwt_server.admin().ListSigningKeys(
        admin_pb2.ListSigningKeysRequest(), metadata=jwt_server.admin_metadata
    )
    public = jwt.PyJWK(json.loads(jwks.keys[0].public_jwk))
    assert jwt.decode(
        own_token(jwt_server, tenant.organization_id),
        public,
        algorithms=["ES256"],
        audience="urn:watchword:api",
    )


def test_c8_s6_tokens_minted_from_a_deactivated_key_are_refused(jwt_server) -> None:
    tenant = make_tenant(jwt_server, "derived")
    key = create_credential(jwt_server, kind=API_KEY, organization_id=tenant.organization_id, name="k")
    token = own_token(jwt_server, tenant.organization_id, credential_id=key.credential.id)
    assert authenticate(jwt_server, bearer(token)).principal.credential_id == key.credential.id
    jwt_server.admin().DeactivateCredential(
        admin_pb2.DeactivateCredentialRequest(id=key.credential.id), metadata=jwt_server.admin_metadata
    )
    assert reason(authenticate(jwt_server, bearer(token))) == reasons.CREDENTIAL_DEACTIVATED


def test_c8_refusals(jwt_server) -> None:
    org = make_tenant(jwt_server, "own-refusals").organization_id
    stranger = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "wrong typ": (own_token(jwt_server, org, typ="JWT"), reasons.TOKEN_CLAIMS_INVALID),
        "wrong aud": (own_token(jwt_server, org, aud="someone-else"), reasons.TOKEN_AUDIENCE_MISMATCH),
        "unknown kid": (own_token(jwt_server, org, key=stranger, kid="not-a-kid"), reasons.TOKEN_KEY_UNKNOWN),
        "forged with the right kid": (
            own_token(jwt_server, org, key=stranger),
            reasons.TOKEN_SIGNATURE_INVALID,
        ),
        "expired": (own_token(jwt_server, org, exp=int(time.time()) - 600), reasons.TOKEN_EXPIRED),
        "no organization": (own_token(jwt_server, org, organization_id=None), reasons.TOKEN_CLAIMS_INVALID),
        "credential of another org": (
            own_token(jwt_server, org, credential_id="0123456789abcdef"),
            reasons.CREDENTIAL_DEACTIVATED,
        ),
    }
    for name, (token, expected) in cases.items():
        assert reason(authenticate(jwt_server, bearer(token))) == expected, name
