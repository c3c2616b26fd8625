"""Tokens die with the secret they were minted from (issue #12, section 5: I6, S6).

A token minted from an API key (I1), an OAuth client (I2) or a connector (I3) records which of that
credential's secrets it was minted from; once that secret stops verifying (a rotation with overlap 0 at
once, with an overlap when it ends) every such token is refused with `credential_rotated`. Real server on
SQLite here; across PostgreSQL replicas in tests/system/test_replicas_revocation.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from watchword import reasons, secret_format
from watchword.crypto import master_key
from watchword.crypto.master_key import MasterKey
from watchword.domain import CredentialKind, PresentedCredential, Principal, Transport
from watchword.identify import tenant_jwt
from watchword.identify.credential_state import secret_still_verifies, secret_version
from watchword.identify.sealed_keys import SealedKeys, sealing_purpose
from watchword.identify.verifier import JwtSettings, PresentedJwt
from watchword.jose import jws
from watchword.store.models import Credential
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.server import WatchwordProcess
from support.tenants import API_KEY, Tenant, create_credential, make_tenant

OVERLAP_SECONDS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # A long cache TTL: only the rotation itself (not an expiring cache entry) can make a refusal fast.
    env = {"WATCHWORD_CACHE_TTL_SECONDS": "30"}
    with WatchwordProcess(tmp_path_factory.mktemp("i6") / "data", env=env) as process:
        yield process


@pytest.fixture(scope="module")
def tenant(server: WatchwordProcess) -> Tenant:
    return make_tenant(server, "rotation")


def authenticate(server: WatchwordProcess, token: str) -> auth_pb2.AuthenticateResponse:
    header = common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")
    source = common_pb2.CredentialSource(http=common_pb2.HttpRequest(headers=[header]))
    return server.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=source), timeout=10)


def accepted(server: WatchwordProcess, token: str) -> bool:
    return authenticate(server, token).HasField("principal")


def reason(server: WatchwordProcess, token: str) -> str:
    return authenticate(server, token).refusal.reason


def rotate(server: WatchwordProcess, credential_id: str, overlap: int) -> str:
    request = admin_pb2.RotateCredentialRequest(id=credential_id, overlap_seconds=overlap)
    return server.admin().RotateCredential(request, metadata=server.admin_metadata, timeout=10).secret


def issue(server: WatchwordProcess, **grant: object) -> str:
    response = server.auth().IssueToken(auth_pb2.IssueTokenRequest(**grant), timeout=10)
    assert response.HasField("token"), response
    return response.token.access_token


def api_key(server: WatchwordProcess, tenant: Tenant) -> admin_pb2.CreateCredentialResponse:
    return create_credential(
        server, kind=API_KEY, organization_id=tenant.organization_id, name="k", permissions=["event.send"]
    )


def exchange(server: WatchwordProcess, secret: str) -> str:
    return issue(server, api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=secret))


def connector(server: WatchwordProcess, tenant: Tenant) -> admin_pb2.CreateCredentialResponse:
    return create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_CONNECTOR,
        organization_id=tenant.organization_id,
        name="hull",
        permissions=["track"],
    )


def subject_token(server: WatchwordProcess, connector_id: str, secret: str) -> str:
    me = common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id="u-1")
    grant = auth_pb2.SubjectTokenGrant(connector_id=connector_id, connector_secret=secret, subject=me)
    return issue(server, subject_token=grant)


def client_token(server: WatchwordProcess, client_id: str, secret: str) -> str:
    auth = auth_pb2.ClientAuthentication(client_id=client_id, client_secret=secret)
    return issue(server, client_credentials=auth_pb2.ClientCredentialsGrant(client=auth))


def wait_until(condition: Callable[[], bool], seconds: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "the condition never held"
        time.sleep(0.05)
    return time.monotonic() - started


def test_i6_s6_rotating_an_api_key_with_overlap_0_refuses_its_tokens_at_once(server, tenant) -> None:
    key = api_key(server, tenant)
    tokens = [exchange(server, key.secret) for _ in range(2)]
    for _ in range(2):  # verified, then served from the verified-token cache
        assert all(accepted(server, token) for token in tokens)
    claims = jwt.decode(tokens[0], options={"verify_signature": False})
    assert claims["secret_version"], "the token records which secret it was minted from"
    assert key.secret not in tokens[0]
    new_secret = rotate(server, key.credential.id, 0)
    assert {reason(server, token) for token in tokens} == {reasons.CREDENTIAL_ROTATED}
    fresh = exchange(server, new_secret)
    assert accepted(server, fresh), "a token from the new secret works"
    assert accepted(server, new_secret)


def test_i6_s6_with_an_overlap_tokens_of_the_old_secret_die_when_it_ends(server, tenant) -> None:
    key = api_key(server, tenant)
    before = exchange(server, key.secret)
    new_secret = rotate(server, key.credential.id, OVERLAP_SECONDS)
    rotated_at = time.monotonic()
    during = exchange(server, key.secret)  # the old secret still verifies: so does what it mints
    fresh = exchange(server, new_secret)
    assert all(accepted(server, token) for token in (before, during, fresh))
    waited = wait_until(lambda: not accepted(server, before), OVERLAP_SECONDS + 2)
    assert time.monotonic() - rotated_at >= OVERLAP_SECONDS - 0.5, f"refused too early ({waited:.2f}s)"
    assert reason(server, before) == reason(server, during) == reasons.CREDENTIAL_ROTATED
    assert accepted(server, fresh), "a token from the new secret outlives the overlap"
    # A second rotation ends the tokens of the secret it replaces, overlap 0.
    rotate(server, key.credential.id, 0)
    assert reason(server, fresh) == reasons.CREDENTIAL_ROTATED


def test_i6_s6_a_connectors_subject_tokens_die_with_its_rotated_secret(server, tenant) -> None:
    row = connector(server, tenant)
    before = subject_token(server, row.credential.id, row.secret)
    assert accepted(server, before)
    new_secret = rotate(server, row.credential.id, OVERLAP_SECONDS)
    during = subject_token(server, row.credential.id, row.secret)
    fresh = subject_token(server, row.credential.id, new_secret)
    assert all(accepted(server, token) for token in (before, during, fresh))
    wait_until(lambda: not accepted(server, during), OVERLAP_SECONDS + 2)
    assert reason(server, before) == reasons.CREDENTIAL_ROTATED
    assert accepted(server, fresh)
    rotate(server, row.credential.id, 0)
    assert reason(server, fresh) == reasons.CREDENTIAL_ROTATED


def test_i6_s6_client_credentials_tokens_die_with_the_rotated_client_secret(server, tenant) -> None:
    client = create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=tenant.organization_id,
        name="svc",
        permissions=["event.send"],
        client_auth_method=2,  # client_secret_post
    )
    token = client_token(server, client.credential.id, client.secret)
    assert accepted(server, token)
    new_secret = rotate(server, client.credential.id, 0)
    assert reason(server, token) == reasons.CREDENTIAL_ROTATED
    assert accepted(server, client_token(server, client.credential.id, new_secret))


def _record(**fields: object) -> Credential:
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(CredentialKind.API_KEY, credential_id)
    return Credential(
        id=credential_id,
        kind=int(CredentialKind.API_KEY),
        name="k",
        secret_hash=secret_format.hash_secret(secret),
        secret_hint="x",
        **fields,
    )


def test_i6_s6_which_secret_versions_still_verify() -> None:
    now = datetime.now(UTC)
    never_rotated = _record()
    current = secret_version(never_rotated.secret_hash)
    assert secret_still_verifies(never_rotated, current, now)
    assert not secret_still_verifies(never_rotated, "", now)
    other_last = "B" if current.endswith("A") else "A"  # differ from the version in its last character
    assert not secret_still_verifies(never_rotated, current[:-1] + other_last, now)
    # Tokens minted before versions were recorded: trusted only while the credential was never rotated.
    assert secret_still_verifies(never_rotated, None, now)
    rotated = _record(
        previous_secret_hash=never_rotated.secret_hash,
        previous_secret_valid_until=now + timedelta(seconds=5),
        rotated_at=now,
    )
    assert secret_still_verifies(rotated, current, now), "the previous secret, during its overlap"
    assert not secret_still_verifies(rotated, current, now + timedelta(seconds=5)), "overlap over"
    assert secret_still_verifies(rotated, secret_version(rotated.secret_hash), now + timedelta(days=1))
    assert not secret_still_verifies(rotated, None, now)
    assert secret_version(rotated.secret_hash) != current
    assert never_rotated.secret_hash not in current


def _tenant_record(
    master: MasterKey, current: bytes, previous: bytes | None, until: datetime | None
) -> Credential:
    credential_id = secret_format.new_credential_id()
    purpose = sealing_purpose(credential_id)
    return Credential(
        id=credential_id,
        kind=int(CredentialKind.TENANT_SIGNING_SECRET),
        name="signer",
        organization_id="org",
        permissions=["event.publish"],
        algorithms=["HS256"],
        secret_hash=secret_format.hash_secret(current.decode()),
        previous_secret_hash=secret_format.hash_secret(previous.decode()) if previous else None,
        previous_secret_valid_until=until,
        rotated_at=datetime.now(UTC) if previous else None,
        secret_hint="x",
        sealed_secret=master.seal(current, purpose),
        previous_sealed_secret=master.seal(previous, purpose) if previous else None,
    )


async def test_i6_c4_a_tenant_principal_records_which_signing_secret_signed() -> None:
    """An internal token minted for a C4 principal carries the version of the secret that signed the
    caller's token, so it lives exactly as long as that secret verifies (not only until any rotation)."""
    master = MasterKey.from_text(master_key.generate(), "test")
    now = datetime.now(UTC)
    old, new = b"old-tenant-secret-" + b"o" * 24, b"new-tenant-secret-" + b"n" * 24
    record = _tenant_record(master, new, old, now + timedelta(seconds=30))

    async def lookup(_kid: str) -> Credential:
        return record

    for secret, version_of in ((new, record.secret_hash), (old, record.previous_secret_hash)):
        claims = {
            "sub": "u",
            "iss": "t",
            "jti": "j",
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + 60,
        }
        token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": record.id})
        verifier = tenant_jwt.TenantJwtVerifier(lookup, SealedKeys(master), JwtSettings(leeway_seconds=0))
        presented = PresentedJwt(PresentedCredential(token, Transport.BEARER), jws.parse(token))
        principal = await verifier.verify(presented, now)
        assert isinstance(principal, Principal), principal
        assert principal.secret_version == secret_version(version_of)
        assert secret_still_verifies(record, principal.secret_version, now)
    assert not secret_still_verifies(
        record, secret_version(record.previous_secret_hash), now + timedelta(minutes=1)
    )
