"""E2: WatchwordSigner (httpx.Auth) posting to a real local receiver that verifies what a customer would:
the Standard Webhooks signature (official `standardwebhooks` package) and the bearer token; a 401 makes it
ask SignOutbound again with previous_token_rejected and retry once, under the same webhook-id (O3, against
the tests' own OAuth token server)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from watchword.v1 import admin_pb2
from watchword_client import (
    AsyncWatchwordClient,
    CallerNotAllowed,
    OutboundSigningError,
    WatchwordClient,
    WatchwordSigner,
)

from support.client_receiver import WebhookReceiver
from support.server import WatchwordProcess
from support.tenants import STATIC_TOKEN, create_credential, make_tenant
from support.token_server import Client, TokenServer

BODY = json.dumps({"type": "order.created", "id": 42}).encode()


def create_outbound(
    server: WatchwordProcess, **credential: object
) -> admin_pb2.CreateOutboundCredentialResponse:
    secrets = credential.pop("secrets", {})
    request = admin_pb2.CreateOutboundCredentialRequest(
        credential=admin_pb2.OutboundCredential(**credential), secrets=admin_pb2.OutboundSecrets(**secrets)
    )
    return server.admin().CreateOutboundCredential(request, metadata=server.admin_metadata, timeout=10)


def delivery_token(server: WatchwordProcess, organization_id: str) -> str:
    """What a delivery service holds: a static token granted outbound.sign in its organization."""
    created = create_credential(
        server,
        kind=STATIC_TOKEN,
        organization_id=organization_id,
        name="delivery",
        permissions=["outbound.sign"],
    )
    return created.secret


@pytest.fixture(scope="module")
def signed_bearer(server):
    org = make_tenant(server, "signer").organization_id
    created = create_outbound(
        server,
        organization_id=org,
        name="hooks",
        scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
        sign_payload=True,
        secrets={"bearer_token": "customer-bearer"},
    )
    return org, created


def test_e2_signer_sync_attaches_headers_the_receiver_verifies(server, signed_bearer) -> None:
    org, created = signed_bearer
    with (
        WebhookReceiver(signing_secret=created.payload_signing_secret, require_bearer=True) as receiver,
        WatchwordClient(server.address, token=delivery_token(server, org)) as watchword,
        httpx.Client(auth=WatchwordSigner(created.credential.id, client=watchword)) as http,
    ):
        response = http.post(receiver.url, content=BODY, headers={"webhook-id": "msg_order_42"})
        assert response.status_code == 204
        (delivery,) = receiver.deliveries
        assert delivery.problem == ""
        assert delivery.body == BODY
        assert delivery.headers["authorization"] == "Bearer customer-bearer"
        assert delivery.headers["webhook-id"] == "msg_order_42", "the caller's message id is kept"
        http.post(receiver.url, content=b'{"n": 2}')
        assert receiver.deliveries[1].status == 204
        assert receiver.deliveries[1].headers["webhook-id"].startswith("msg_")


async def test_e2_signer_async_attaches_headers_the_receiver_verifies(server, signed_bearer) -> None:
    org, created = signed_bearer
    with WebhookReceiver(signing_secret=created.payload_signing_secret, require_bearer=True) as receiver:
        async with AsyncWatchwordClient(server.address, token=delivery_token(server, org)) as watchword:
            auth = WatchwordSigner(created.credential.id, async_client=watchword)
            async with httpx.AsyncClient(auth=auth) as http:
                response = await http.post(receiver.url, content=BODY)
        assert response.status_code == 204
        assert receiver.deliveries[0].problem == ""


def test_e2_signer_raises_typed_errors_and_sends_nothing_unsigned(server, signed_bearer) -> None:
    org, created = signed_bearer
    gone = create_outbound(
        server,
        organization_id=org,
        name="gone",
        scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
        secrets={"bearer_token": "g"},
    )
    server.admin().DeactivateOutboundCredential(
        admin_pb2.DeactivateOutboundCredentialRequest(id=gone.credential.id), metadata=server.admin_metadata
    )
    ungranted = create_credential(
        server, kind=STATIC_TOKEN, organization_id=org, name="x", permissions=["event.send"]
    )
    with (
        WebhookReceiver() as receiver,
        WatchwordClient(server.address, token=delivery_token(server, org)) as ww,
    ):
        with httpx.Client(auth=WatchwordSigner(gone.credential.id, client=ww)) as http:
            with pytest.raises(OutboundSigningError) as caught:
                http.post(receiver.url, content=BODY)
            assert caught.value.error.reason == "outbound_credential_deactivated"
            assert caught.value.retryable is False
        with (
            WatchwordClient(server.address, token=ungranted.secret) as not_allowed,
            httpx.Client(auth=WatchwordSigner(created.credential.id, client=not_allowed)) as http,
            pytest.raises(CallerNotAllowed) as refused,
        ):
            http.post(receiver.url, content=BODY)
        assert refused.value.reason == "caller_not_allowed"
        assert receiver.deliveries == []


async def test_e2_signer_401_drops_the_cached_token_and_retries_once_with_the_same_id(tmp_path) -> None:
    with TokenServer() as token_server:
        token_server.register(Client(client_id="watchword-hooks", secret="s3cret"))
        env = {"WATCHWORD_OUTBOUND_ALLOW_PRIVATE_TOKEN_URLS": "true"}
        with WatchwordProcess(tmp_path / "data", env=env) as server:
            org = make_tenant(server, "o3-signer").organization_id
            created = create_outbound(
                server,
                organization_id=org,
                name="oauth",
                scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
                token_url=token_server.token_url,
                client_id="watchword-hooks",
                client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
                sign_payload=True,
                secrets={"client_secret": "s3cret"},
            )
            receiver = WebhookReceiver(signing_secret=created.payload_signing_secret, require_bearer=True)
            with receiver:
                async with AsyncWatchwordClient(
                    server.address, token=delivery_token(server, org)
                ) as watchword:
                    auth = WatchwordSigner(created.credential.id, async_client=watchword)
                    async with httpx.AsyncClient(auth=auth) as http:
                        assert (await http.post(receiver.url, content=BODY)).status_code == 204
                        first_token = receiver.deliveries[0].headers["authorization"].removeprefix("Bearer ")
                        assert token_server.request_count == 1
                        # A reported 401 refetches at most once per 5 s (docs/guides/outbound.md).
                        time.sleep(5.2)
                        receiver.reject(first_token)
                        response = await http.post(receiver.url, content=BODY)
            assert response.status_code == 204
            rejected, accepted = receiver.deliveries[1:]
            assert (rejected.status, accepted.status) == (401, 204)
            assert rejected.headers["webhook-id"] == accepted.headers["webhook-id"]
            assert accepted.headers["authorization"] != rejected.headers["authorization"]
            assert token_server.request_count == 2, "the 401 made Watchword fetch a fresh token"
            # A receiver that keeps answering 401: exactly one retry, then the 401 goes to the caller.
            receiver_state = WebhookReceiver(signing_secret=created.payload_signing_secret)
            with receiver_state, WatchwordClient(server.address, token=delivery_token(server, org)) as ww:
                second_token = accepted.headers["authorization"].removeprefix("Bearer ")
                receiver_state.reject(second_token)
                with httpx.Client(auth=WatchwordSigner(created.credential.id, client=ww)) as http:
                    assert http.post(receiver_state.url, content=BODY).status_code == 401
                assert [d.status for d in receiver_state.deliveries] == [401, 401]
