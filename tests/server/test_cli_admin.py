"""The `watchword admin` commands against a real server: a created secret is printed once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from watchword import reasons
from watchword.v1 import auth_pb2, common_pb2

from support.certificates import loopback_certificate
from support.server import WatchwordProcess


def admin_cli(server, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    env["WATCHWORD_ADDRESS"] = server.address
    if token is not None:
        env["WATCHWORD_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "watchword.cli", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_json(server, *args: str) -> dict:
    result = admin_cli(server, *args, token=server.admin_token)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_quick_start_path_through_the_cli(server) -> None:
    organization = run_json(server, "org", "create", "cli-corp")
    application = run_json(server, "app", "create", "--org", organization["id"], "webhooks")
    created = run_json(
        server,
        "credential",
        "create",
        "--kind",
        "application-secret",
        "--org",
        organization["id"],
        "--app",
        application["id"],
        "--name",
        "ci",
    )
    secret = created["secret"]
    assert secret.startswith("wwas_")
    fetched = run_json(server, "credential", "get", created["credential"]["id"])
    listed = run_json(server, "credential", "list", "--org", organization["id"])
    assert secret not in json.dumps(fetched)
    assert secret not in json.dumps(listed)
    assert [c["id"] for c in listed["credentials"]] == [created["credential"]["id"]]

    request = auth_pb2.AuthorizeRequest(
        credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=secret)),
        action="event_type.create",
        resource=auth_pb2.Resource(application_id=application["id"]),
    )
    assert server.auth().Authorize(request, timeout=10).decision.allowed

    run_json(server, "credential", "deactivate", created["credential"]["id"])
    assert server.auth().Authorize(request, timeout=10).refusal.reason == reasons.CREDENTIAL_DEACTIVATED


def test_api_key_with_grants_and_event_filters_through_the_cli(server) -> None:
    organization = run_json(server, "org", "create", "cli-keys")
    created = run_json(
        server,
        "credential",
        "create",
        "--kind",
        "api-key",
        "--org",
        organization["id"],
        "--name",
        "events",
        "--permission",
        "event.send",
        "--allow-event",
        "order.*",
        "--deny-event",
        "order.secret",
        "--basic",
    )
    credential = created["credential"]
    assert credential["permissions"] == ["event.send"]
    assert credential["event_types_allowed"] == ["order.*"]
    assert credential["basic_auth_enabled"] is True


def test_admin_cli_errors_are_short_and_clear(server) -> None:
    no_token = admin_cli(server, "org", "list")
    assert no_token.returncode == 2
    assert "WATCHWORD_ADMIN_TOKEN" in no_token.stderr
    bad_token = admin_cli(server, "org", "list", token="wwad_x")
    assert bad_token.returncode == 2
    assert "UNAUTHENTICATED" in bad_token.stderr
    unknown = admin_cli(server, "org", "get", "no-such-org", token=server.admin_token)
    assert unknown.returncode == 2
    assert "NOT_FOUND" in unknown.stderr
    invalid = admin_cli(
        server,
        "credential",
        "create",
        "--kind",
        "api-key",
        "--name",
        "x",
        "--org",
        "o",
        "--permission",
        "fly",
        token=server.admin_token,
    )
    assert "INVALID_ARGUMENT: permissions: unknown action(s) ['fly']" in invalid.stderr
    for result in (no_token, bad_token, unknown, invalid):
        assert "Traceback" not in result.stderr


def test_c9_oauth_client_through_the_cli(server) -> None:
    organization = run_json(server, "org", "create", "cli-oauth")
    flags = ["--kind", "oauth-client", "--org", organization["id"], "--name", "svc"]
    flags += ["--client-auth-method", "client_secret_post", "--permission", "event.send"]
    created = run_json(server, "credential", "create", *flags)
    assert created["secret"].startswith("wwoc_")
    assert created["credential"]["client_auth_method"] == "CLIENT_AUTH_METHOD_CLIENT_SECRET_POST"


# ---- the admin commands find the server as the server finds its own address (issue #12, section 9) ----


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _admin_with_server_env(
    server_env: dict[str, str], token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`watchword admin` with the server's own WATCHWORD_* environment, no --address, no WATCHWORD_ADDRESS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    env.update(server_env)
    env["WATCHWORD_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "watchword.cli", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_e3_admin_reads_the_servers_host_and_port_from_the_environment(tmp_path: Path) -> None:
    port = _free_port()
    server_env = {"WATCHWORD_PORT": str(port), "WATCHWORD_HOST": "0.0.0.0"}
    with WatchwordProcess(tmp_path / "data", env=server_env) as server:
        assert server.port == port
        result = _admin_with_server_env(server_env, server.admin_token, "org", "create", "found-by-env")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["name"] == "found-by-env"
        # The explicit address still wins.
        elsewhere = _admin_with_server_env(
            server_env,
            server.admin_token,
            "--address",
            f"127.0.0.1:{_free_port()}",
            "--timeout",
            "2",
            "org",
            "list",
        )
        assert elsewhere.returncode != 0
        assert "UNAVAILABLE" in elsewhere.stderr


def test_e3_admin_reads_the_port_from_the_servers_config_file(tmp_path: Path) -> None:
    port = _free_port()
    config_file = tmp_path / "watchword.toml"
    config_file.write_text(f"port = {port}\n")
    with WatchwordProcess(tmp_path / "data", env={"WATCHWORD_PORT": str(port)}) as server:
        result = _admin_with_server_env(
            {"WATCHWORD_CONFIG": str(config_file)}, server.admin_token, "org", "list"
        )
        assert result.returncode == 0, result.stderr


def test_e3_admin_uses_tls_when_the_server_settings_do(tmp_path: Path) -> None:
    cert, key = loopback_certificate(tmp_path, common_name="watchword-test", dns=())
    port = _free_port()
    server_env = {
        "WATCHWORD_PORT": str(port),
        "WATCHWORD_TLS_CERT_FILE": str(cert),
        "WATCHWORD_TLS_KEY_FILE": str(key),
    }
    with WatchwordProcess(tmp_path / "data", env=server_env) as server:
        trusted = {**server_env, "WATCHWORD_CA_FILE": str(cert)}
        result = _admin_with_server_env(trusted, server.admin_token, "org", "create", "over-tls")
        assert result.returncode == 0, result.stderr
        # No CA file: TLS all the same (the server's settings say so), trusting gRPC's default roots,
        # which this environment variable of gRPC's points at the test certificate.
        default_roots = {**server_env, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(cert)}
        result = _admin_with_server_env(default_roots, server.admin_token, "org", "list")
        assert result.returncode == 0, result.stderr
        assert "over-tls" in result.stdout


def test_e3_admin_explains_a_server_port_of_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    env.update({"WATCHWORD_PORT": "0", "WATCHWORD_ADMIN_TOKEN": "wwad_x"})
    result = subprocess.run(
        [sys.executable, "-m", "watchword.cli", "admin", "org", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "pass --address or set WATCHWORD_ADDRESS" in result.stderr
    assert "Traceback" not in result.stderr
