"""C9 OAuth2 client authentication: client_secret_basic (RFC 6749 §2.3.1 form-encoding), client_secret_post,
client_secret_jwt and private_key_jwt (RFC 7523), with jti replay refused across replicas."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from watchword import reasons
from watchword.api import new_credential
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import ClientAuthentication, CredentialKind, Principal, Refusal
from watchword.extract import TransportSettings
from watchword.identify import minting, oauth_client
from watchword.identify.oauth_client import ASSERTION_TYPE
from watchword.pipeline import JwtSettings, Pipeline
from watchword.store import database
from watchword.store.change_feed import ChangeKind
from watchword.store.repository import Store
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.sqlite import migrated_sqlite_url
from support.tamper import change_last_character
from support.tenants import create_credential, make_tenant

ENDPOINT = "https://watchword.example/oauth/token"
BASIC, POST, SECRET_JWT, PRIVATE_KEY_JWT = 1, 2, 3, 4
MASTER = MasterKey.from_text(generate(), "test")


async def _pipeline(url: str) -> tuple[Store, Pipeline]:
    store = Store.connect(url)
    pipeline = Pipeline(
        store, Catalogue.load(), TransportSettings(), MASTER, JwtSettings(token_endpoint=ENDPOINT)
    )
    return store, pipeline


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Store, Pipeline, str]]:
    url = migrated_sqlite_url(tmp_path, "c9.db")
    store, pipeline = await _pipeline(url)
    organization = await store.create_organization("oauth")
    yield store, pipeline, organization.id
    await store.close()


async def register(store: Store, org: str, method: int, public_jwk: str = "") -> tuple[str, str]:
    request = admin_pb2.CreateCredentialRequest(
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=org,
        name="client",
        permissions=["event.send"],
        client_auth_method=method,
        public_jwk=public_jwk,
    )
    row, secret = new_credential.build(request, Catalogue.load(), MASTER)
    await store.add_credential(row)
    return row.id, secret


def assertion(client_id: str, key: object, algorithm: str, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": ENDPOINT,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)


def basic_header(client_id: str, secret: str) -> str:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


async def check(pipeline: Pipeline, auth: ClientAuthentication) -> Principal | Refusal:
    return await pipeline.clients.verify(auth, datetime.now(UTC))


async def test_c9_client_secret_basic_with_form_encoding(world) -> None:
    store, pipeline, org = world
    client_id, secret = await register(store, org, BASIC)
    principal = await check(pipeline, ClientAuthentication(authorization=basic_header(client_id, secret)))
    assert isinstance(principal, Principal)
    assert principal.kind is CredentialKind.OAUTH_CLIENT
    assert principal.permissions == frozenset({"event.send"})
    wrong = await check(
        pipeline, ClientAuthentication(authorization=basic_header(client_id, change_last_character(secret)))
    )
    assert isinstance(wrong, Refusal)


async def test_c9_client_secret_post(world) -> None:
    store, pipeline, org = world
    client_id, secret = await register(store, org, POST)
    assert isinstance(
        await check(pipeline, ClientAuthentication(client_id=client_id, client_secret=secret)), Principal
    )
    # The same client over Basic: it was registered for post only.
    refused = await check(pipeline, ClientAuthentication(authorization=basic_header(client_id, secret)))
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.CLIENT_AUTH_METHOD_NOT_ALLOWED


async def test_c9_a_secret_used_as_the_wrong_client_is_refused(world) -> None:
    store, pipeline, org = world
    _, first_secret = await register(store, org, POST)
    second, _ = await register(store, org, POST)
    refused = await check(pipeline, ClientAuthentication(client_id=second, client_secret=first_secret))
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.CREDENTIAL_UNKNOWN


async def test_c9_more_than_one_method_is_refused(world) -> None:
    store, pipeline, org = world
    client_id, secret = await register(store, org, POST)
    both = ClientAuthentication(
        client_id=client_id, client_secret=secret, authorization=basic_header(client_id, secret)
    )
    refused = await check(pipeline, both)
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.CLIENT_AUTH_METHOD_NOT_ALLOWED


async def test_c9_client_secret_jwt_and_replay(world) -> None:
    store, pipeline, org = world
    client_id, secret = await register(store, org, SECRET_JWT)
    token = assertion(client_id, secret.encode(), "HS256")
    auth = ClientAuthentication(client_assertion_type=ASSERTION_TYPE, client_assertion=token)
    assert isinstance(await check(pipeline, auth), Principal)
    replayed = await check(pipeline, auth)
    assert isinstance(replayed, Refusal)
    assert replayed.reason == reasons.TOKEN_REPLAYED


async def test_c9_a_rotated_client_secret_jwt_client_signs_with_its_new_secret(world) -> None:
    """Its secret is an HMAC key, sealed at creation: the rotation seals the new one too."""
    store, pipeline, org = world
    client_id, old_secret = await register(store, org, SECRET_JWT)
    record = await store.get_credential(client_id)
    assert record is not None
    new = minting.rotated_secret(record, MASTER)
    await store.rotate_credential(client_id, new.hash, new.sealed, None)
    pipeline.caches.invalidate(ChangeKind.CREDENTIAL, (client_id,))  # what the change feed does
    signed = assertion(client_id, new.value.encode(), "HS256")
    auth = ClientAuthentication(client_assertion_type=ASSERTION_TYPE, client_assertion=signed)
    assert isinstance(await check(pipeline, auth), Principal)
    stale = assertion(client_id, old_secret.encode(), "HS256")
    auth = ClientAuthentication(client_assertion_type=ASSERTION_TYPE, client_assertion=stale)
    refused = await check(pipeline, auth)
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.TOKEN_SIGNATURE_INVALID


# The HS512 case signs with a short key on purpose.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_c9_assertion_claims_are_checked_completely(world) -> None:
    store, pipeline, org = world
    client_id, secret = await register(store, org, SECRET_JWT)
    other, _ = await register(store, org, SECRET_JWT)
    key = secret.encode()
    cases = {
        "wrong aud": (
            assertion(client_id, key, "HS256", aud="https://elsewhere/token"),
            reasons.TOKEN_AUDIENCE_MISMATCH,
        ),
        "sub differs": (assertion(client_id, key, "HS256", sub=other), reasons.TOKEN_CLAIMS_INVALID),
        "iss of another client": (assertion(other, key, "HS256", sub=other), reasons.TOKEN_SIGNATURE_INVALID),
        "expired": (assertion(client_id, key, "HS256", exp=int(time.time()) - 300), reasons.TOKEN_EXPIRED),
        "exp far away": (
            assertion(client_id, key, "HS256", exp=int(time.time()) + 7300),
            reasons.TOKEN_CLAIMS_INVALID,
        ),
        "no jti": (assertion(client_id, key, "HS256", jti=None), reasons.TOKEN_CLAIMS_INVALID),
        "HS512": (assertion(client_id, key, "HS512"), reasons.TOKEN_ALGORITHM_NOT_ALLOWED),
    }
    for name, (token, expected) in cases.items():
        refused = await check(
            pipeline, ClientAuthentication(client_assertion_type=ASSERTION_TYPE, client_assertion=token)
        )
        assert isinstance(refused, Refusal), name
        assert refused.reason == expected, name
    wrong_type = ClientAuthentication(
        client_assertion_type="urn:other", client_assertion=assertion(client_id, key, "HS256")
    )
    assert (await check(pipeline, wrong_type)).reason == reasons.CREDENTIAL_MALFORMED
    access_token = jwt.encode(
        {"iss": client_id, "sub": client_id, "aud": ENDPOINT, "exp": int(time.time()) + 60, "jti": "a"},
        key,
        algorithm="HS256",
        headers={"typ": "at+jwt"},
    )
    typed = ClientAuthentication(client_assertion_type=ASSERTION_TYPE, client_assertion=access_token)
    assert (await check(pipeline, typed)).reason == reasons.TOKEN_CLAIMS_INVALID


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_c9_private_key_jwt_with_the_registered_public_key(world, algorithm: str) -> None:
    store, pipeline, org = world
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        public_jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    public_jwk["alg"] = algorithm
    client_id, shown = await register(store, org, PRIVATE_KEY_JWT, json.dumps(public_jwk))
    assert shown == "", "a private_key_jwt client has no secret to show"
    auth = ClientAuthentication(
        client_assertion_type=ASSERTION_TYPE, client_assertion=assertion(client_id, private, algorithm)
    )
    assert isinstance(await check(pipeline, auth), Principal)
    stranger = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else rsa.generate_private_key(65537, 2048)
    )
    forged = ClientAuthentication(
        client_assertion_type=ASSERTION_TYPE, client_assertion=assertion(client_id, stranger, algorithm)
    )
    assert (await check(pipeline, forged)).reason == reasons.TOKEN_SIGNATURE_INVALID


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "PS256", "ES256", "EdDSA"])
async def test_c9_i2_an_unknown_or_unfit_clients_assertion_is_checked_against_a_stand_in(
    world, algorithm: str, monkeypatch
) -> None:
    """The signature work of a known client, for every algorithm (the refusal's reason stays internal)."""
    store, pipeline, org = world
    verified: list[str] = []
    real_verify = oauth_client.jws.verify
    monkeypatch.setattr(
        oauth_client.jws,
        "verify",
        lambda parsed, key: verified.append(key.algorithm) or real_verify(parsed, key),
    )
    keys = {
        "HS256": b"k" * 32,
        "RS256": rsa.generate_private_key(65537, 2048),
        "PS256": rsa.generate_private_key(65537, 2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    post_client, _ = await register(store, org, POST)
    for client_id, reason in (
        ("0123456789abcdef", reasons.CREDENTIAL_UNKNOWN),
        (post_client, reasons.CLIENT_AUTH_METHOD_NOT_ALLOWED),
    ):
        auth = ClientAuthentication(
            client_assertion_type=ASSERTION_TYPE,
            client_assertion=assertion(client_id, keys[algorithm], algorithm),
        )
        refused = await check(pipeline, auth)
        assert isinstance(refused, Refusal)
        assert refused.reason == reason
    assert verified == [algorithm, algorithm]


async def test_c9_registration_refuses_private_or_secret_keys(world) -> None:
    store, _, org = world
    private = ec.generate_private_key(ec.SECP256R1())
    with_private = json.loads(ECAlgorithm.to_jwk(private, as_dict=False))
    for bad in (
        json.dumps(with_private),
        json.dumps({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}),
        "not json",
    ):
        with pytest.raises(Exception, match="public_jwk"):
            await register(store, org, PRIVATE_KEY_JWT, bad)


async def test_c9_assertion_replay_is_refused_across_replicas_sharing_postgresql(postgres) -> None:
    url = postgres.create_database(f"c9_{uuid.uuid4().hex[:8]}")
    await database.migrate_async(url)
    first_store, first = await _pipeline(url)
    second_store, second = await _pipeline(url)
    try:
        org = (await first_store.create_organization("replicas")).id
        client_id, secret = await register(first_store, org, SECRET_JWT)
        auth = ClientAuthentication(
            client_assertion_type=ASSERTION_TYPE,
            client_assertion=assertion(client_id, secret.encode(), "HS256"),
        )
        assert isinstance(await check(first, auth), Principal)
        replayed = await check(second, auth)
        assert isinstance(replayed, Refusal)
        assert replayed.reason == reasons.TOKEN_REPLAYED
    finally:
        await first_store.close()
        await second_store.close()


def test_c9_t2_authenticate_accepts_a_basic_oauth_client_through_the_server(server) -> None:
    tenant = make_tenant(server, "oauth-server")
    created = create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=tenant.organization_id,
        name="svc",
        permissions=["event.send"],
        client_auth_method=BASIC,
    )
    assert created.secret.startswith("wwoc_")
    http = common_pb2.HttpRequest(
        headers=[
            common_pb2.KeyValue(
                name="Authorization", value=basic_header(created.credential.id, created.secret)
            )
        ]
    )
    response = server.auth().Authenticate(
        auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(http=http)), timeout=10
    )
    assert response.principal.kind == common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT
    assert response.principal.credential_id == created.credential.id


@pytest.mark.parametrize("changes", [{"exp": 10**12}, {"exp": 1e12}, {"nbf": 10**13}, {"iat": 2**64}])
async def test_s8_c9_assertion_with_time_claims_out_of_range_is_refused(world, changes) -> None:
    store, pipeline, org = world
    client_id, secret = await register(store, org, SECRET_JWT)
    token = assertion(client_id, secret.encode(), "HS256", **changes)
    auth = ClientAuthentication(client_assertion_type=ASSERTION_TYPE, client_assertion=token)
    refused = await check(pipeline, auth)
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.TOKEN_CLAIMS_INVALID


async def test_c9_a_client_secret_jwt_client_signs_with_its_new_secret_after_a_rotation(world) -> None:
    # RotateCredential mints through minting.rotated_secret: the new secret is sealed as the first was
    # (before, a rotation stored none for these clients and their assertions could never verify again).
    store, pipeline, org = world
    client_id, _ = await register(store, org, SECRET_JWT)
    rotated = minting.rotated_secret(await store.get_credential(client_id), MASTER)
    await store.rotate_credential(client_id, rotated.hash, rotated.sealed, None)
    signed = assertion(client_id, rotated.value, "HS256")
    auth = ClientAuthentication(client_assertion_type=ASSERTION_TYPE, client_assertion=signed)
    assert isinstance(await check(pipeline, auth), Principal)
