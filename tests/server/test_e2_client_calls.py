"""E2: the Python client library (sync and asyncio) against the real server, through its public API only;
deadlines and retries against a scripted gRPC server; TLS against a server with a self-signed certificate."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import random
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from watchword.v1 import admin_pb2, common_pb2
from watchword_client import (
    ApiKeyExchange,
    AsyncWatchwordClient,
    AuthorizeEntry,
    BareCredential,
    CallerUnauthenticated,
    ClientCredentials,
    CredentialKind,
    HealthStatus,
    HttpCredential,
    InvalidRequest,
    IssuedToken,
    OutboundError,
    Principal,
    Refusal,
    Resource,
    RetryPolicy,
    SignedHeaders,
    Subject,
    SubjectTokenGrant,
    SubjectType,
    TokenError,
    Transport,
    WatchwordClient,
    WatchwordDeadlineExceeded,
    WatchwordUnavailable,
)

from support.certificates import loopback_certificate
from support.client_fake_watchword import FakeWatchword
from support.server import WatchwordProcess
from support.tenants import API_KEY, APPLICATION_SECRET, create_credential, make_tenant


@dataclass(frozen=True)
class World:
    organization_id: str
    application_id: str
    other_application_id: str
    app_secret: str
    api_key: str
    api_key_id: str
    connector_id: str
    connector_secret: str
    oauth_client_id: str
    oauth_secret: str
    outbound_id: str


@pytest.fixture(scope="module")
def world(server: WatchwordProcess) -> World:
    tenant = make_tenant(server, "client-lib")
    org = tenant.organization_id
    secret = create_credential(
        server, kind=APPLICATION_SECRET, organization_id=org, application_id=tenant.application_id, name="app"
    )
    key = create_credential(
        server,
        kind=API_KEY,
        organization_id=org,
        name="key",
        permissions=["event.list"],
        event_types_denied=["invoice.internal.*"],
    )
    connector = create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_CONNECTOR,
        organization_id=org,
        name="hull",
        permissions=["track"],
    )
    oauth = create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=org,
        name="svc",
        permissions=["event.send"],
        client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
    )
    outbound = server.admin().CreateOutboundCredential(
        admin_pb2.CreateOutboundCredentialRequest(
            credential=admin_pb2.OutboundCredential(
                organization_id=org, name="hooks", scheme=admin_pb2.OUTBOUND_SCHEME_BEARER
            ),
            secrets=admin_pb2.OutboundSecrets(bearer_token="customer-token"),
        ),
        metadata=server.admin_metadata,
        timeout=10,
    )
    return World(
        org,
        tenant.application_id,
        tenant.other_application_id,
        secret.secret,
        key.secret,
        key.credential.id,
        connector.credential.id,
        connector.secret,
        oauth.credential.id,
        oauth.secret,
        outbound.credential.id,
    )


@pytest.fixture
def client(server: WatchwordProcess):
    with WatchwordClient(server.address, token=server.admin_token) as made:
        yield made


# ---- the sync client against the real server ----


def test_e2_sync_authenticate_http_and_bare_give_typed_principals(client, world) -> None:
    principal = client.authenticate(HttpCredential.bearer(world.app_secret))
    assert isinstance(principal, Principal)
    assert principal.kind is CredentialKind.APPLICATION_SECRET
    assert principal.transport is Transport.BEARER
    assert (principal.organization_id, principal.application_id) == (
        world.organization_id,
        world.application_id,
    )
    assert "event_type.create" in principal.permissions
    bare = client.authenticate(BareCredential(world.api_key))
    assert isinstance(bare, Principal)
    assert (bare.kind, bare.transport, bare.id) == (CredentialKind.API_KEY, Transport.BARE, world.api_key_id)
    assert bare.event_types_denied == ("invoice.internal.*",)
    basic = HttpCredential(
        method="GET",
        path="/v1/x",
        headers=[
            ("authorization", "Basic " + base64.b64encode(f"{world.organization_id}:x".encode()).decode())
        ],
    )
    assert isinstance(client.authenticate(basic), Refusal)


def test_e2_sync_refusal_is_a_result_with_its_reason(client) -> None:
    refusal = client.authenticate(HttpCredential(method="GET", path="/"))
    assert refusal == Refusal(refusal.reason, refusal.message, refusal.www_authenticate)
    assert refusal.reason == "credential_missing"
    malformed = client.authenticate(BareCredential("wwak_not-a-real-key"))
    assert isinstance(malformed, Refusal)
    assert malformed.reason == "credential_malformed"
    assert "wwak_not" not in repr(BareCredential("wwak_not-a-real-key"))


def test_e2_sync_authorize_allows_and_denies_with_reasons(client, world) -> None:
    credential = HttpCredential.bearer(world.app_secret)
    allowed = client.authorize(credential, "event_type.create", Resource(application_id=world.application_id))
    assert allowed.allowed
    assert (allowed.decision.reason, allowed.decision.rule) == ("allowed", "S2")
    assert allowed.principal is not None
    assert allowed.refusal is None
    other = client.authorize(
        credential, "event_type.create", Resource(application_id=world.other_application_id)
    )
    assert not other.allowed
    assert other.decision.reason == "resource_not_in_scope"
    refused = client.authorize(BareCredential("wwst_" + "A" * 55), "event_type.create")
    assert not refused.allowed
    assert refused.principal is None
    assert refused.refusal is not None
    assert refused.refusal.reason == "credential_malformed"
    # Each decision has its own id (the one in its audit record), refusals too.
    ids = {allowed.decision_id, other.decision_id, refused.decision_id}
    assert len(ids) == 3
    assert all(len(decision_id) == 24 for decision_id in ids)


def test_e2_sync_authorize_batch_keeps_order(client, world) -> None:
    key = BareCredential(world.api_key)
    results = client.authorize_batch(
        [
            AuthorizeEntry(
                key, "event.list", Resource(application_id=world.application_id, event_type="a.b")
            ),
            AuthorizeEntry(
                key,
                "event.list",
                Resource(application_id=world.application_id, event_type="invoice.internal.x"),
            ),
            AuthorizeEntry(
                BareCredential(world.app_secret), "application.create", Resource(world.organization_id)
            ),
        ]
    )
    assert [r.decision.reason for r in results] == [
        "allowed",
        "event_type_denied",
        "action_level_not_allowed",
    ]
    assert len({r.decision_id for r in results} - {""}) == 3  # one id per entry
    with pytest.raises(InvalidRequest) as empty:
        client.authorize_batch([])
    assert (empty.value.code, empty.value.reason, empty.value.metadata) == (
        "INVALID_ARGUMENT",
        "field_invalid",
        {"field": "entries"},
    )


def test_e2_sync_issue_token_with_the_three_grants(client, world) -> None:
    exchanged = client.issue_token(ApiKeyExchange(world.api_key), requested_lifetime_seconds=600)
    assert isinstance(exchanged, IssuedToken)
    assert (exchanged.token_type, exchanged.expires_in, exchanged.scope) == ("Bearer", 600, "event.list")
    assert exchanged.access_token not in repr(exchanged)
    minted = client.authenticate(BareCredential(exchanged.access_token))
    assert isinstance(minted, Principal)
    assert (minted.kind, minted.token_id) == (CredentialKind.WATCHWORD_TOKEN, exchanged.token_id)
    credentials = ClientCredentials(client_id=world.oauth_client_id, client_secret=world.oauth_secret)
    issued = client.issue_token(credentials)
    assert isinstance(issued, IssuedToken)
    assert issued.scope == "event.send"
    wrong = client.issue_token(ClientCredentials(client_id=world.oauth_client_id, client_secret="wwoc_wrong"))
    assert isinstance(wrong, TokenError)
    assert wrong.error == "invalid_client"
    subject = Subject(SubjectType.USER, "u-7")
    acting = client.issue_token(SubjectTokenGrant(world.connector_id, world.connector_secret, subject))
    assert isinstance(acting, IssuedToken)
    principal = client.authenticate(BareCredential(acting.access_token))
    assert isinstance(principal, Principal)
    assert principal.subject == subject
    assert principal.expires_at is not None
    assert principal.expires_at > dt.datetime.now(dt.UTC)


def test_e2_sync_sign_outbound_needs_the_caller_token(server, client, world) -> None:
    signed = client.sign_outbound(
        world.outbound_id, method="POST", url="https://customer.example/h", body=b"{}"
    )
    assert isinstance(signed, SignedHeaders)
    assert signed.get("authorization") == "Bearer customer-token"
    assert "customer-token" not in repr(signed)
    unknown = client.sign_outbound("0123456789abcdef", method="POST", url="https://c.example/h", body=b"")
    assert isinstance(unknown, OutboundError)
    assert (unknown.reason, unknown.retryable) == ("outbound_credential_unknown", False)
    with WatchwordClient(server.address) as anonymous, pytest.raises(CallerUnauthenticated) as caught:
        anonymous.sign_outbound(world.outbound_id, method="POST", url="https://c.example/h", body=b"")
    assert caught.value.reason == "caller_token_missing"


def test_e2_sync_health(client) -> None:
    assert client.health() is HealthStatus.SERVING
    assert client.health("watchword.v1.AuthService") is HealthStatus.SERVING
    assert client.health("no.such.Service") is HealthStatus.SERVICE_UNKNOWN


# ---- the asyncio client against the real server ----


async def test_e2_async_client_mirrors_the_sync_one(server, world) -> None:
    async with AsyncWatchwordClient(server.address, token=server.admin_token) as client:
        principal = await client.authenticate(HttpCredential.bearer(world.app_secret))
        assert isinstance(principal, Principal)
        assert principal.application_id == world.application_id
        decision = await client.authorize(
            BareCredential(world.api_key),
            "event.list",
            Resource(application_id=world.application_id, event_type="x"),
        )
        assert decision.allowed
        batch = await client.authorize_batch(
            [
                AuthorizeEntry(
                    BareCredential(world.api_key),
                    "event.send",
                    Resource(application_id=world.application_id, event_type="x"),
                )
            ]
        )
        assert [r.decision.reason for r in batch] == ["action_not_granted"]
        token = await client.issue_token(ApiKeyExchange(world.api_key))
        assert isinstance(token, IssuedToken)
        signed = await client.sign_outbound(
            world.outbound_id, method="POST", url="https://c.example/h", body=b"x"
        )
        assert isinstance(signed, SignedHeaders)
        assert await client.health() is HealthStatus.SERVING
        with pytest.raises(InvalidRequest):
            await client.authorize_batch([])


# ---- deadlines and retries against a scripted server ----


def test_e2_deadline_that_passes_raises_a_typed_error_quickly() -> None:
    with FakeWatchword() as fake, WatchwordClient(fake.address, deadline=0.3) as client:
        fake.hold(2.0)
        started = time.monotonic()
        with pytest.raises(WatchwordDeadlineExceeded) as caught:
            client.authenticate(BareCredential("t"))
        assert time.monotonic() - started < 1.0
        assert caught.value.code == "DEADLINE_EXCEEDED"
        assert isinstance(caught.value, WatchwordUnavailable), "middlewares answer 503 for it"
        started = time.monotonic()
        with pytest.raises(WatchwordDeadlineExceeded):
            client.authenticate(BareCredential("t"), deadline=0.1)  # a per-call deadline wins
        assert time.monotonic() - started < 0.6


async def test_e2_async_deadline_that_passes_raises_a_typed_error_quickly() -> None:
    with FakeWatchword() as fake:
        fake.hold(2.0)
        async with AsyncWatchwordClient(fake.address, deadline=0.3) as client:
            started = time.monotonic()
            with pytest.raises(WatchwordDeadlineExceeded):
                await client.authenticate(BareCredential("t"))
            assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_e2_retries_until_the_server_answers(code: grpc.StatusCode) -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.2)
    with FakeWatchword() as fake, WatchwordClient(fake.address, retry=policy, token="caller") as client:
        fake.fail(code, times=3)
        principal = client.authenticate(BareCredential("t"))
        assert isinstance(principal, Principal)
        assert principal.id == "scripted"
        assert len(fake.arrivals) == 4
        assert all(md.get("authorization") == "Bearer caller" for md in fake.metadata)


def test_e2_retries_are_bounded_and_back_off_exponentially() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.2, max_backoff=0.4, jitter=random.Random(7))
    expected = RetryPolicy(max_attempts=3, initial_backoff=0.2, max_backoff=0.4, jitter=random.Random(7))
    pauses = [expected.delay(1), expected.delay(2)]
    with FakeWatchword() as fake, WatchwordClient(fake.address, retry=policy, deadline=5) as client:
        fake.fail(grpc.StatusCode.UNAVAILABLE, times=10)
        with pytest.raises(WatchwordUnavailable) as caught:
            client.authenticate(BareCredential("t"))
        assert caught.value.code == "UNAVAILABLE"
        arrivals = fake.arrivals
        assert len(arrivals) == 3, "max_attempts counts the first call"
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        for gap, pause in zip(gaps, pauses, strict=True):
            assert pause <= gap < pause + 0.3  # the pause, plus the call's own time on a busy machine
        assert 0 <= pauses[0] <= 0.2
        assert 0 <= pauses[1] <= 0.4


def test_e2_retries_never_go_beyond_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=50, initial_backoff=0.1, max_backoff=0.1)
    with FakeWatchword() as fake, WatchwordClient(fake.address, retry=policy, deadline=0.5) as client:
        fake.fail(grpc.StatusCode.UNAVAILABLE, times=100)
        started = time.monotonic()
        with pytest.raises(WatchwordUnavailable):
            client.authenticate(BareCredential("t"))
        assert time.monotonic() - started < 0.8
        assert 2 <= len(fake.arrivals) < 50


def test_e2_other_errors_are_not_retried() -> None:
    with FakeWatchword() as fake, WatchwordClient(fake.address) as client:
        fake.fail(grpc.StatusCode.INVALID_ARGUMENT, times=1)
        with pytest.raises(InvalidRequest):
            client.authenticate(BareCredential("t"))
        assert len(fake.arrivals) == 1


async def test_e2_async_retries_until_the_server_answers() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.02, max_backoff=0.05)
    with FakeWatchword() as fake:
        fake.fail(grpc.StatusCode.UNAVAILABLE, times=2)
        async with AsyncWatchwordClient(fake.address, retry=policy) as client:
            assert isinstance(await client.authenticate(BareCredential("t")), Principal)
        assert len(fake.arrivals) == 3
        fake.fail(grpc.StatusCode.UNAVAILABLE, times=3)
        async with AsyncWatchwordClient(fake.address, retry=policy) as client:
            with pytest.raises(WatchwordUnavailable):
                await client.authenticate(BareCredential("t"))
        assert len(fake.arrivals) == 6


def test_e2_server_down_is_unavailable_not_a_refusal(tmp_path: Path) -> None:
    with FakeWatchword() as fake:
        address = fake.address
    with WatchwordClient(address, deadline=1.0) as client, pytest.raises(WatchwordUnavailable):
        client.authorize(BareCredential("t"), "event.list")


def test_e2_client_options_are_checked() -> None:
    with pytest.raises(ValueError, match="deadline"):
        WatchwordClient("127.0.0.1:1", deadline=0)
    with pytest.raises(ValueError, match="target"):
        WatchwordClient("")
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# ---- TLS ----


async def test_e2_tls_with_a_root_ca_file(tmp_path: Path) -> None:
    cert, key = loopback_certificate(tmp_path)
    env = {"WATCHWORD_TLS_CERT_FILE": str(cert), "WATCHWORD_TLS_KEY_FILE": str(key)}
    with WatchwordProcess(tmp_path / "data", env=env) as tls_server:
        target = f"localhost:{tls_server.port}"
        with WatchwordClient(target, root_ca_file=cert, token=tls_server.admin_token) as client:
            assert client.health() is HealthStatus.SERVING
            principal = client.authenticate(BareCredential(tls_server.admin_token))
            assert isinstance(principal, (Principal, Refusal))
        async with AsyncWatchwordClient(target, root_ca_file=cert) as client:
            assert await client.health() is HealthStatus.SERVING
        with (
            WatchwordClient(tls_server.address, deadline=1.0) as plaintext,
            pytest.raises(WatchwordUnavailable),
        ):
            plaintext.health()
        (tmp_path / "other").mkdir()
        other, _ = loopback_certificate(tmp_path / "other")
        with (
            WatchwordClient(target, root_ca_file=other, deadline=1.0) as untrusted,
            pytest.raises(WatchwordUnavailable),
        ):
            untrusted.health()
