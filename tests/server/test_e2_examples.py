"""E2: the two example services run as subprocesses against a real Watchword, which is their only source
of identity: the HTTP API service (uvicorn + WatchwordMiddleware) and the webhook delivery worker
(WatchwordSigner) posting to a receiver that verifies Standard Webhooks signatures and the bearer token."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from watchword.v1 import admin_pb2

from support.client_receiver import WebhookReceiver
from support.paths import ROOT
from support.tenants import API_KEY, APPLICATION_SECRET, STATIC_TOKEN, create_credential, make_tenant

EXAMPLES = ROOT / "clients" / "examples"
_LISTENING = re.compile(r"api service listening on (http://[\d.]+:\d+)")


@pytest.fixture(scope="module")
def tenant(server):
    return make_tenant(server, "examples")


@pytest.fixture(scope="module")
def api_service(server) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "api_service.py"), "--watchword", server.address, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    listening = _LISTENING.search(line)
    try:
        assert listening, (
            f"the api service did not start: {line}{process.stdout.read() if process.poll() else ''}"
        )
        yield listening.group(1)
    finally:
        process.terminate()
        process.wait(10)


def test_e2_example_api_service_answers_only_what_watchword_allows(server, tenant, api_service) -> None:
    secret = create_credential(
        server,
        kind=APPLICATION_SECRET,
        organization_id=tenant.organization_id,
        application_id=tenant.application_id,
        name="app",
    )
    viewer = create_credential(
        server,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="v",
        permissions=["event_type.list"],
    )
    app_auth = {"authorization": f"Bearer {secret.secret}"}
    path = f"/v1/applications/{tenant.application_id}/event_types"
    with httpx.Client(base_url=api_service, timeout=10) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        created = http.post(path, json={"name": "invoice.paid"}, headers=app_auth)
        assert created.status_code == 201, created.text
        assert created.json()["principal"] == {
            "id": secret.credential.id,
            "kind": "application_secret",
            "organization_id": tenant.organization_id,
            "application_id": tenant.application_id,
            "credential_id": secret.credential.id,
        }
        listed = http.get(path, headers={"authorization": f"Bearer {viewer.secret}"})
        assert listed.status_code == 200
        assert listed.json()["event_types"] == ["invoice.paid"]
        assert listed.json()["principal"]["kind"] == "api_key"
        forbidden = http.post(path, json={"name": "x"}, headers={"authorization": f"Bearer {viewer.secret}"})
        assert forbidden.status_code == 403
        assert forbidden.json()["reason"] == "action_not_granted"
        anonymous = http.get(path)
        assert anonymous.status_code == 401
        assert anonymous.json()["reason"] == "credential_missing"
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        other_app = http.get(f"/v1/applications/{tenant.other_application_id}/event_types", headers=app_auth)
        assert other_app.status_code == 403
        assert other_app.json()["reason"] == "resource_not_in_scope"
        assert http.get("/v1/unknown", headers=app_auth).json()["reason"] == "route_not_configured"
        organization = http.get(f"/v1/organizations/{tenant.organization_id}", headers=app_auth)
        assert organization.status_code == 403, "an application secret never reaches organization actions"


def test_e2_example_delivery_worker_posts_signed_webhooks(server, tenant, tmp_path: Path) -> None:
    outbound = server.admin().CreateOutboundCredential(
        admin_pb2.CreateOutboundCredentialRequest(
            credential=admin_pb2.OutboundCredential(
                organization_id=tenant.organization_id,
                name="customer",
                scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
                sign_payload=True,
            ),
            secrets=admin_pb2.OutboundSecrets(bearer_token="customer-bearer"),
        ),
        metadata=server.admin_metadata,
        timeout=10,
    )
    signer = create_credential(
        server,
        kind=STATIC_TOKEN,
        organization_id=tenant.organization_id,
        name="delivery",
        permissions=["outbound.sign"],
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(json.dumps({"id": n, "type": "order.created", "total": n * 10}) for n in (1, 2, 3))
    )
    env = {**os.environ, "DELIVERY_WATCHWORD_TOKEN": signer.secret}
    with WebhookReceiver(signing_secret=outbound.payload_signing_secret, require_bearer=True) as receiver:
        command = [
            sys.executable,
            str(EXAMPLES / "delivery_worker.py"),
            "--watchword",
            server.address,
            "--credential",
            outbound.credential.id,
            "--url",
            receiver.url,
            str(events),
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        outcomes = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(o["event"], o["outcome"], o["status"], o["webhook_id"]) for o in outcomes] == [
            (n, "delivered", 204, f"msg_{n}") for n in (1, 2, 3)
        ]
        assert [json.loads(d.body)["id"] for d in receiver.deliveries] == [1, 2, 3]
        assert all(d.problem == "" for d in receiver.deliveries)
        assert signer.secret not in result.stdout + result.stderr
        # Without a caller token that may sign, nothing is sent.
        denied = subprocess.run(
            command,
            env={**os.environ, "DELIVERY_WATCHWORD_TOKEN": "wwst_not_allowed"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert denied.returncode == 1
        refusals = {(o["outcome"], o["reason"]) for o in map(json.loads, denied.stdout.splitlines())}
        assert refusals == {("failed", "caller_not_allowed")}
        assert len(receiver.deliveries) == 3
