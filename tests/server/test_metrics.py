"""Prometheus metrics (issue #8): scraped from the real server's own metrics port after real calls."""

from __future__ import annotations

import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from watchword import reasons
from watchword.domain import CredentialKind
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.cli import refused_start
from support.jwks_server import JwksServer
from support.observe import sample, scrape
from support.server import WatchwordProcess
from support.tenants import make_tenant


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory):
    with WatchwordProcess(tmp_path_factory.mktemp("metrics") / "data") as server:
        yield server


def bearer(token: str) -> common_pb2.CredentialSource:
    header = common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")
    return common_pb2.CredentialSource(http=common_pb2.HttpRequest(headers=[header]))


def test_the_metrics_port_is_announced_and_separate(measured) -> None:
    assert measured.metrics_port not in (0, measured.port, measured.http_port)
    lines = [line for line in measured.output if "listening on" in line]
    assert lines[-1].startswith("watchword listening on"), "the gRPC line stays last"
    assert any(line.startswith("watchword metrics listening on 127.0.0.1:") for line in lines)
    response = httpx.get(f"http://127.0.0.1:{measured.metrics_port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


def test_decisions_are_counted_by_kind_result_and_reason(measured) -> None:
    tenant = make_tenant(measured, "counted")
    secret = (
        measured.admin()
        .CreateCredential(
            admin_pb2.CreateCredentialRequest(
                kind=common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET,
                organization_id=tenant.organization_id,
                application_id=tenant.application_id,
                name="app",
            ),
            metadata=measured.admin_metadata,
        )
        .secret
    )
    before = scrape(measured.metrics_port)
    auth = measured.auth()
    for _ in range(3):
        auth.Authenticate(auth_pb2.AuthenticateRequest(credential=bearer(secret)))
    auth.Authenticate(auth_pb2.AuthenticateRequest(credential=bearer("nonsense")))
    auth.Authorize(
        auth_pb2.AuthorizeRequest(
            credential=bearer(secret),
            action="application.create",
            resource=auth_pb2.Resource(organization_id=tenant.organization_id),
        )
    )
    with pytest.raises(grpc.RpcError):
        auth.Authorize(auth_pb2.AuthorizeRequest(credential=bearer(secret)))  # no action: INVALID_ARGUMENT
    after = scrape(measured.metrics_port)

    def moved(**labels: str) -> float:
        name = "watchword_decisions_total"
        return sample(after, name, **labels) - sample(before, name, **labels)

    kind = CredentialKind.APPLICATION_SECRET.name.lower()
    assert moved(rpc="Authenticate", kind=kind, result="allow", reason="allowed") == 3
    assert (
        moved(rpc="Authenticate", kind="unknown", result="refused", reason=reasons.CREDENTIAL_MALFORMED) == 1
    )
    assert moved(rpc="Authorize", kind=kind, result="deny", reason=reasons.ACTION_LEVEL_NOT_ALLOWED) == 1
    assert moved(rpc="Authorize", kind="unknown", result="error", reason="field_invalid") == 1


def test_latency_histograms_per_method_and_in_flight(measured) -> None:
    health = health_pb2_grpc.HealthStub(measured.channel())
    for _ in range(5):
        health.Check(health_pb2.HealthCheckRequest())
    measured.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=bearer("x")))
    families = scrape(measured.metrics_port)
    method = "/grpc.health.v1.Health/Check"
    buckets = [
        (labels["le"], value)
        for name, labels, value in families["watchword_rpc_duration_seconds"]
        if name == "watchword_rpc_duration_seconds_bucket" and labels["method"] == method
    ]
    assert [le for le, _ in buckets][-1] == "+Inf"
    assert len(buckets) == 17
    counts = [value for _, value in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    total = sample(families, "watchword_rpc_duration_seconds_count", method=method)
    assert total >= 5
    assert counts[-1] == total
    assert 0 < sample(families, "watchword_rpc_duration_seconds_sum", method=method) < total
    assert sample(
        families, "watchword_rpc_duration_seconds_count", method="/watchword.v1.AuthService/Authenticate"
    )
    # The scrape is not an RPC: nothing is in flight between calls.
    assert sample(families, "watchword_rpcs_in_flight") == 0
    assert "watchword_rpcs_in_flight" in families


def test_method_names_no_service_serves_share_one_unknown_series(measured) -> None:
    """Callers choose method names, and the admin check answers any admin name: such calls must not grow
    the metrics (one latency series per name) or the server's memory."""
    channel = measured.channel()
    for number in range(30):
        call = channel.unary_unary(
            f"/watchword.v1.AdminService/NoSuchMethod{number}",
            request_serializer=lambda request: request,
            response_deserializer=lambda response: response,
        )
        with pytest.raises(grpc.RpcError) as raised:
            call(b"", timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    families = scrape(measured.metrics_port)
    methods = {labels["method"] for _, labels, _ in families["watchword_rpc_duration_seconds"]}
    assert not any("NoSuchMethod" in method for method in methods), methods
    assert sample(families, "watchword_rpc_duration_seconds_count", method="unknown") >= 30


def test_cache_hits_and_misses_per_cache(measured) -> None:
    tenant = make_tenant(measured, "cached")
    key = (
        measured.admin()
        .CreateCredential(
            admin_pb2.CreateCredentialRequest(
                kind=common_pb2.CREDENTIAL_KIND_API_KEY,
                organization_id=tenant.organization_id,
                name="k",
                permissions=["event.list"],
            ),
            metadata=measured.admin_metadata,
        )
        .secret
    )
    before = scrape(measured.metrics_port)
    request = auth_pb2.AuthorizeRequest(
        credential=bearer(key),
        action="event.list",
        resource=auth_pb2.Resource(application_id=tenant.application_id, event_type="a"),
    )
    for _ in range(4):
        assert measured.auth().Authorize(request).decision.allowed
    after = scrape(measured.metrics_port)

    def moved(cache: str, result: str) -> float:
        name = "watchword_cache_requests_total"
        return sample(after, name, cache=cache, result=result) - sample(
            before, name, cache=cache, result=result
        )

    assert moved("credentials", "miss") == 1, "the first call loads the key (the admin change dropped it)"
    assert moved("credentials", "hit") == 3
    assert moved("applications", "miss") + moved("applications", "hit") == 4
    assert moved("applications", "hit") >= 3
    names = {labels["cache"] for _, labels, _ in after["watchword_cache_requests"]}
    assert names == {
        "credentials",
        "applications",
        "memberships",
        "revocations",
        "verified_tokens",
        "outbound_credentials",
    }


def test_audit_and_token_fetch_and_revocation_families_are_served(measured) -> None:
    families = scrape(measured.metrics_port)
    assert sample(families, "watchword_audit_records_written_total") > 0
    assert sample(families, "watchword_audit_records_dropped_total") == 0
    assert "watchword_outbound_token_fetches" in families
    assert sample(families, "watchword_outbound_token_fetches_total", result="ok") == 0
    assert "watchword_jwks_refreshes" in families
    bounds = [
        labels["le"]
        for name, labels, _ in families["watchword_revocation_propagation_seconds"]
        if name.endswith("_bucket")
    ]
    assert bounds[:2] == ["0.005", "0.01"]
    assert bounds[-1] == "+Inf"


def test_metrics_can_be_turned_off(tmp_path) -> None:
    with WatchwordProcess(tmp_path / "data", env={"WATCHWORD_METRICS_ENABLED": "false"}) as server:
        assert server.metrics_port == 0
        assert not any("metrics listening" in line for line in server.output)
        response = server.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=bearer("x")))
        assert response.refusal.reason == reasons.CREDENTIAL_MALFORMED


def test_jwks_refreshes_by_issuer_and_result(tmp_path) -> None:
    """C1's key set: fetched at start, refetched for an unknown kid, refused when the IdP is gone."""
    with JwksServer(algorithms=("ES256",)) as idp:
        config = tmp_path / "watchword.toml"
        config.write_text(
            "[[issuers]]\n"
            f'issuer = "{idp.issuer}"\n'
            'audiences = ["api"]\n'
            f'discovery_url = "{idp.discovery_url}"\n'
            "allow_insecure_http = true\n"
            "refresh_min_interval_seconds = 1\n"
        )
        with WatchwordProcess(tmp_path / "data", args=["--config", str(config)]) as server:
            now = int(time.time())
            claims = {"iss": idp.issuer, "aud": "api", "sub": "u", "iat": now, "exp": now + 300}
            token = idp.sign(claims, idp.rotate("ES256"))
            response = server.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=bearer(token)))
            assert response.HasField("principal")
            families = scrape(server.metrics_port)
            name = "watchword_jwks_refreshes_total"
            assert sample(families, name, issuer=idp.issuer, result="ok") == 2, "start, then the new kid"
            assert sample(families, name, issuer=idp.issuer, result="failed") == 0


def test_a_metrics_port_in_use_stops_the_start_with_a_message(tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = refused_start(
            {
                "WATCHWORD_DATA_DIR": str(tmp_path / "data"),
                "WATCHWORD_PORT": "0",
                "WATCHWORD_HTTP_PORT": "0",
                "WATCHWORD_METRICS_PORT": str(taken.getsockname()[1]),
            }
        )
    assert "cannot serve metrics on 127.0.0.1:" in result.stderr


def test_the_metrics_port_must_not_be_the_grpc_or_http_port() -> None:
    from watchword.config import Settings

    with pytest.raises(ValueError, match="metrics_port"):
        Settings(port=9000, metrics_port=9000)
    with pytest.raises(ValueError, match="metrics_port"):
        Settings(http_port=9464)
    assert Settings(metrics_enabled=False, http_port=9464).metrics_port == 9464
