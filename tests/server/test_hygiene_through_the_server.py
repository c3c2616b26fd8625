"""Key hygiene through the real server: uses counted and flushed (seen through the admin API and the CLI),
the unused listing, and a signed leak report that deactivates a C5 API key on the spot."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from watchword import reasons
from watchword.hygiene.secret_scanning import REPORT_PATH, token_hash
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.cli import refused_start, run_cli
from support.observe import audit_records, wait_for_records
from support.scanner_keys import KeyServer, document
from support.server import WatchwordProcess

KEY_ID = "scanner-key-1"


@pytest.fixture(scope="module")
def scanner_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_key_document(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    entry = {"key_identifier": KEY_ID, "key": pem.decode("ascii"), "is_current": True}
    path.write_text(json.dumps({"public_keys": [entry]}), encoding="utf-8")


def run_json(server: WatchwordProcess, *args: str) -> dict:
    """`watchword admin ARGS` against `server`, its JSON answer."""
    settings = {"WATCHWORD_ADDRESS": server.address, "WATCHWORD_ADMIN_TOKEN": server.admin_token}
    result = run_cli("admin", *args, settings=settings)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def hygiene_server(directory: Path, key: ec.EllipticCurvePrivateKey, action: str) -> WatchwordProcess:
    keys = directory / "scanner-keys.json"
    directory.mkdir(parents=True, exist_ok=True)
    write_key_document(keys, key)
    env = {
        "WATCHWORD_USAGE_FLUSH_SECONDS": "0.2",
        "WATCHWORD_SECRET_SCANNING_PUBLIC_KEYS_FILE": str(keys),
        "WATCHWORD_LEAKED_CREDENTIAL_ACTION": action,
    }
    return WatchwordProcess(directory / "data", env=env)


@pytest.fixture(scope="module")
def hygiene(tmp_path_factory: pytest.TempPathFactory, scanner_key) -> Iterator[WatchwordProcess]:
    with hygiene_server(tmp_path_factory.mktemp("hygiene"), scanner_key, "deactivate") as process:
        yield process


def api_key(server: WatchwordProcess, organization_id: str, name: str = "key") -> tuple[str, str]:
    request = admin_pb2.CreateCredentialRequest(
        kind=common_pb2.CREDENTIAL_KIND_API_KEY,
        organization_id=organization_id,
        name=name,
        permissions=["application.list"],
    )
    created = server.admin().CreateCredential(request, metadata=server.admin_metadata, timeout=10)
    return created.credential.id, created.secret


def organization(server: WatchwordProcess, name: str = "hygiene") -> str:
    request = admin_pb2.CreateOrganizationRequest(name=name)
    return server.admin().CreateOrganization(request, metadata=server.admin_metadata, timeout=10).id


def authenticate(server: WatchwordProcess, secret: str) -> auth_pb2.AuthenticateResponse:
    source = common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=secret))
    return server.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=source), timeout=10)


def get_credential(server: WatchwordProcess, credential_id: str) -> admin_pb2.Credential:
    request = admin_pb2.GetCredentialRequest(id=credential_id)
    return server.admin().GetCredential(request, metadata=server.admin_metadata, timeout=10)


def wait_for_uses(server: WatchwordProcess, credential_id: str, uses: int) -> admin_pb2.Credential:
    deadline = time.monotonic() + 15
    while True:
        credential = get_credential(server, credential_id)
        if credential.uses_last_30_days >= uses or time.monotonic() > deadline:
            return credential
        time.sleep(0.1)


def test_c5_uses_reach_the_admin_api_and_the_cli_after_a_flush(hygiene: WatchwordProcess) -> None:
    org = organization(hygiene)
    used_id, used = api_key(hygiene, org, "used")
    idle_id, _ = api_key(hygiene, org, "idle")
    for _ in range(7):
        assert authenticate(hygiene, used).HasField("principal")
    credential = wait_for_uses(hygiene, used_id, 7)
    assert credential.uses_last_30_days == 7
    assert credential.HasField("last_used_at")
    assert [entry.uses for entry in credential.daily_usage] == [7]
    idle = get_credential(hygiene, idle_id)
    assert not idle.HasField("last_used_at")
    assert idle.uses_last_30_days == 0

    listed = hygiene.admin().ListCredentials(
        admin_pb2.ListCredentialsRequest(organization_id=org), metadata=hygiene.admin_metadata, timeout=10
    )
    assert {c.id: c.uses_last_30_days for c in listed.credentials} == {used_id: 7, idle_id: 0}

    fetched = run_json(hygiene, "credential", "get", used_id)
    assert fetched["uses_last_30_days"] == "7"
    assert fetched["daily_usage"][0]["uses"] == "7"
    assert "last_used_at" in fetched


def test_admin_tokens_uses_are_counted_too(hygiene: WatchwordProcess) -> None:
    admin_id = hygiene.admin_token.split("_")[1]
    before = get_credential(hygiene, admin_id).uses_last_30_days
    credential = wait_for_uses(hygiene, admin_id, before + 1)  # every GetCredential is a use
    assert credential.uses_last_30_days > before
    assert credential.HasField("last_used_at")


def test_the_unused_listing(hygiene: WatchwordProcess) -> None:
    org = organization(hygiene, "unused")
    fresh_id, _ = api_key(hygiene, org, "fresh")
    request = admin_pb2.ListCredentialsRequest(organization_id=org, unused_for_days=1)
    listed = hygiene.admin().ListCredentials(request, metadata=hygiene.admin_metadata, timeout=10)
    assert list(listed.credentials) == []  # created today: not unused for a day
    cli = run_json(hygiene, "credential", "unused", "--org", org, "--days", "1")
    assert cli.get("credentials", []) == []
    bad = admin_pb2.ListCredentialsRequest(organization_id=org, unused_for_days=-1)
    with pytest.raises(grpc.RpcError) as caught:
        hygiene.admin().ListCredentials(bad, metadata=hygiene.admin_metadata, timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert fresh_id


def post_report(server: WatchwordProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    url = f"http://127.0.0.1:{server.http_port}{REPORT_PATH}"
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=10)


def signed(key: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    signature = base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode("ascii")
    return {"Github-Public-Key-Identifier": KEY_ID, "Github-Public-Key-Signature": signature}


def leak(*tokens: str) -> bytes:
    entries = [
        {
            "token": token,
            "type": "watchword_api_key",
            "url": "https://github.com/o/r/blob/1/a.py",
            "source": "content",
        }
        for token in tokens
    ]
    return json.dumps(entries).encode()


def test_c5_a_reported_leak_is_refused_by_authenticate_right_after(
    hygiene: WatchwordProcess, scanner_key
) -> None:
    org = organization(hygiene, "leaky")
    key_id, secret = api_key(hygiene, org)
    assert authenticate(hygiene, secret).HasField("principal")  # cached as verified on this server
    other_id, other = api_key(hygiene, organization(hygiene, "bystander"))
    body = leak(secret, "wwak_nottherightshape")
    response = post_report(hygiene, body, signed(scanner_key, body))
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"token_hash": token_hash(secret), "token_type": "watchword_api_key", "label": "true_positive"},
        {
            "token_hash": token_hash("wwak_nottherightshape"),
            "token_type": "watchword_api_key",
            "label": "false_positive",
        },
    ]
    refusal = authenticate(hygiene, secret).refusal
    assert refusal.reason == reasons.CREDENTIAL_DEACTIVATED
    fetched = get_credential(hygiene, key_id)
    assert fetched.HasField("leak_reported_at")
    assert fetched.HasField("deactivated_at")
    assert authenticate(hygiene, other).HasField("principal")  # nobody else's key
    assert not get_credential(hygiene, other_id).HasField("deactivated_at")
    reported = wait_for_records(
        lambda: audit_records(hygiene.output), lambda r: r["what"].get("action") == "leak_report", count=2
    )
    by_result = {record["result"]: record for record in reported}
    assert by_result["deactivated"]["who"] == {"credential_id": key_id, "organization_id": org}
    assert by_result["deactivated"]["rpc"] == f"POST {REPORT_PATH}"
    assert by_result["false_positive"]["who"] == {}
    assert secret not in "".join(hygiene.output)


def test_bad_reports_get_a_clean_4xx_and_change_nothing(hygiene: WatchwordProcess, scanner_key) -> None:
    org = organization(hygiene, "targets")
    key_id, secret = api_key(hygiene, org)
    body = leak(secret)
    stranger = ec.generate_private_key(ec.SECP256R1())
    unknown_key = {**signed(scanner_key, body), "Github-Public-Key-Identifier": "not-configured"}
    answers = {
        reasons.LEAK_REPORT_UNSIGNED: post_report(hygiene, body, {}),
        reasons.LEAK_REPORT_SIGNATURE_INVALID: post_report(hygiene, body, signed(stranger, body)),
        reasons.LEAK_REPORT_KEY_UNKNOWN: post_report(hygiene, body, unknown_key),
        reasons.LEAK_REPORT_MALFORMED: post_report(hygiene, b"{}", signed(scanner_key, b"{}")),
    }
    for reason, response in answers.items():
        assert 400 <= response.status_code < 500, (reason, response.text)
        assert response.json()["error"] == reason
    huge = b"[" + b" " * (1024 * 1024 + 10) + b"]"
    too_large = post_report(hygiene, huge, signed(scanner_key, huge))
    assert too_large.status_code == 413
    assert too_large.json()["error"] == reasons.LEAK_REPORT_TOO_LARGE
    assert authenticate(hygiene, secret).HasField("principal")
    assert not get_credential(hygiene, key_id).HasField("leak_reported_at")


def test_flag_mode_through_the_server(tmp_path: Path, scanner_key) -> None:
    with hygiene_server(tmp_path, scanner_key, "flag") as server:
        org = organization(server, "flagged")
        key_id, secret = api_key(server, org)
        body = leak(secret)
        response = post_report(server, body, signed(scanner_key, body))
        assert response.json()[0]["label"] == "true_positive"
        assert authenticate(server, secret).HasField("principal")
        fetched = get_credential(server, key_id)
        assert fetched.HasField("leak_reported_at")
        assert not fetched.HasField("deactivated_at")
        metrics = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
        assert 'watchword_leaked_tokens_total{outcome="flagged"} 1.0' in metrics
        assert 'watchword_leak_reports_total{result="accepted"} 1.0' in metrics


def test_the_last_uses_are_written_at_stop(tmp_path: Path) -> None:
    """A long flush interval: only the flush on SIGTERM can have written the uses."""
    env = {"WATCHWORD_USAGE_FLUSH_SECONDS": "3600"}
    with WatchwordProcess(tmp_path / "data", env=env) as server:
        org = organization(server, "stopping")
        key_id, secret = api_key(server, org)
        for _ in range(3):
            authenticate(server, secret)
        assert get_credential(server, key_id).uses_last_30_days == 0
        admin_token = server.admin_token
    with WatchwordProcess(tmp_path / "data", env=env) as again:
        again.admin_token = admin_token
        assert get_credential(again, key_id).uses_last_30_days == 3


def test_c9_a_client_is_used_at_the_token_endpoint_and_its_tokens_are_not_counted(
    hygiene: WatchwordProcess,
) -> None:
    """Authenticating at the token endpoint is the client's use; calls with the C8 token it got are the
    token's, not the client's."""
    org = organization(hygiene, "clients")
    request = admin_pb2.CreateCredentialRequest(
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=org,
        name="svc",
        permissions=["application.list"],
        client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
    )
    client = hygiene.admin().CreateCredential(request, metadata=hygiene.admin_metadata, timeout=10)
    answer = httpx.post(
        f"http://127.0.0.1:{hygiene.http_port}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.credential.id, client.secret),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    for _ in range(3):
        assert authenticate(hygiene, answer.json()["access_token"]).HasField("principal")
    credential = wait_for_uses(hygiene, client.credential.id, 1)
    time.sleep(0.5)  # a few more flushes: the token's three uses must not arrive
    assert get_credential(hygiene, client.credential.id).uses_last_30_days == 1
    assert credential.HasField("last_used_at")


def test_an_unusable_key_document_stops_the_start_with_a_message(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"public_keys": [{"key_identifier": "k", "key": "not a key"}]}', encoding="utf-8")
    settings = {
        "WATCHWORD_DATA_DIR": str(tmp_path / "data"),
        "WATCHWORD_PORT": "0",
        "WATCHWORD_HTTP_PORT": "0",
        "WATCHWORD_METRICS_PORT": "0",
        "WATCHWORD_SECRET_SCANNING_PUBLIC_KEYS_FILE": str(keys),
    }
    result = refused_start(settings)
    assert "secret_scanning_public_keys_file" in result.stderr
    assert "ECDSA P-256" in result.stderr


def test_c5_keys_fetched_from_a_configured_url(tmp_path: Path, scanner_key) -> None:
    """The key document fetched from a URL (a real HTTP server on 127.0.0.1 standing in for the
    scanner's): the server starts before it is served, and the first report fetches it."""
    key_server = KeyServer()
    key_server.status = 503
    try:
        env = {"WATCHWORD_SECRET_SCANNING_PUBLIC_KEYS_URL": key_server.url}
        with WatchwordProcess(tmp_path / "data", env=env) as server:
            assert "no secret scanner keys yet" in "".join(server.output)
            key_server.status, key_server.body = 200, document(**{KEY_ID: scanner_key})
            _, secret = api_key(server, organization(server, "fetched"))
            body = leak(secret)
            deadline = time.monotonic() + 10
            # Fetched again 2 s after the failed fetch at start, by the first report after that.
            while (response := post_report(server, body, signed(scanner_key, body))).status_code == 401:
                assert response.json()["error"] == reasons.LEAK_REPORT_KEY_UNKNOWN
                assert time.monotonic() < deadline
                time.sleep(0.5)
            assert response.json()[0]["label"] == "true_positive"
            assert authenticate(server, secret).refusal.reason == reasons.CREDENTIAL_DEACTIVATED
    finally:
        key_server.close()
