"""E2: the two examples of clients/python/README.md, run as written against the real server: the ASGI
middleware in front of a Starlette app, and the httpx signer posting to a receiver that verifies the
Standard Webhooks signature (official `standardwebhooks` package) and the bearer token."""

from __future__ import annotations

import json
import re
import types

import httpx

from watchword.v1 import admin_pb2

from support.client_receiver import WebhookReceiver
from support.paths import ROOT
from support.tenants import API_KEY, APPLICATION_SECRET, STATIC_TOKEN, create_credential, make_tenant

CLIENT_README = ROOT / "clients" / "python" / "README.md"


def example(marker: str) -> types.ModuleType:
    """The README's one python block that contains `marker`, executed as a module."""
    blocks = re.findall(r"^```python\n(.*?)^```$", CLIENT_README.read_text(encoding="utf-8"), re.M | re.S)
    (code,) = [block for block in blocks if marker in block]
    module = types.ModuleType(f"readme_example_{marker.strip('(').lower()}")
    exec(compile(code, str(CLIENT_README), "exec"), module.__dict__)  # the README's own code, as written
    return module


async def test_e2_readme_asgi_example_authorizes_each_request(server, monkeypatch) -> None:
    tenant = make_tenant(server, "readme-asgi")
    secret = create_credential(
        server,
        kind=APPLICATION_SECRET,
        organization_id=tenant.organization_id,
        application_id=tenant.application_id,
        name="backend",
    )
    key = create_credential(
        server, kind=API_KEY, organization_id=tenant.organization_id, name="k", permissions=["event.list"]
    )
    monkeypatch.setenv("WATCHWORD_ADDRESS", server.address)
    service = example("WatchwordMiddleware(")
    path = f"/v1/applications/{tenant.application_id}/event_types"
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        created = await http.post(path, headers={"authorization": f"Bearer {secret.secret}"})
        assert created.status_code == 201
        assert created.json() == {
            "application": tenant.application_id,
            "created_by": secret.credential.id,
        }
        missing = await http.post(path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="watchword"'
        denied = await http.post(path, headers={"authorization": f"Bearer {key.secret}"})
        assert (denied.status_code, denied.json()["reason"]) == (403, "action_not_granted")
        assert (await http.get("/healthz")).json() == {"ok": True}
        unrouted = await http.get("/v1/other")
        assert (unrouted.status_code, unrouted.json()["reason"]) == (403, "route_not_configured")
    await service.app.client.close()


def test_e2_readme_signer_example_delivers_a_verified_webhook(server, monkeypatch) -> None:
    tenant = make_tenant(server, "readme-signer")
    request = admin_pb2.CreateOutboundCredentialRequest(
        credential=admin_pb2.OutboundCredential(
            organization_id=tenant.organization_id,
            name="acme-hooks",
            scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
            sign_payload=True,
        ),
        secrets=admin_pb2.OutboundSecrets(bearer_token="customer-bearer"),
    )
    outbound = server.admin().CreateOutboundCredential(request, metadata=server.admin_metadata, timeout=10)
    delivery = create_credential(
        server,
        kind=STATIC_TOKEN,
        organization_id=tenant.organization_id,
        name="delivery",
        permissions=["outbound.sign"],
    )
    monkeypatch.setenv("WATCHWORD_ADDRESS", server.address)
    monkeypatch.setenv("DELIVERY_TOKEN", delivery.secret)
    worker = example("WatchwordSigner(")
    body = json.dumps({"type": "order.created", "id": 42}).encode()
    signing_secret = outbound.payload_signing_secret
    try:
        with WebhookReceiver(signing_secret=signing_secret, require_bearer=True) as receiver:
            assert worker.deliver(receiver.url, outbound.credential.id, 42, body) == 204
            (received,) = receiver.deliveries
    finally:
        worker.watchword.close()
    assert received.problem == ""
    assert received.headers["webhook-id"] == "msg_42"
    assert received.headers["authorization"] == "Bearer customer-bearer"
    assert received.body == body
