"""SignOutbound through the real server: O1 Bearer, O2 Basic, O5 Standard Webhooks (checked with the
official `standardwebhooks` package), O6 secrets sealed and never shown again, rotation overlap."""

from __future__ import annotations

import base64
import json
import sqlite3
import time

import grpc
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.tenants import make_tenant

URL = "https://customer.example/webhooks"
BODY = json.dumps({"type": "order.created", "id": 42}).encode()


def create(server, **credential: object) -> admin_pb2.CreateOutboundCredentialResponse:
    secrets = credential.pop("secrets", {})
    request = admin_pb2.CreateOutboundCredentialRequest(
        credential=admin_pb2.OutboundCredential(**credential), secrets=admin_pb2.OutboundSecrets(**secrets)
    )
    return server.admin().CreateOutboundCredential(request, metadata=server.admin_metadata, timeout=10)


def sign(
    server, credential_id: str, message_id: str = "", body: bytes = BODY
) -> auth_pb2.SignOutboundResponse:
    request = auth_pb2.SignOutboundRequest(
        outbound_credential_id=credential_id, method="POST", url=URL, body=body, message_id=message_id
    )
    return server.auth().SignOutbound(request, metadata=server.admin_metadata, timeout=10)


def headers_of(response: auth_pb2.SignOutboundResponse) -> dict[str, str]:
    assert response.WhichOneof("result") == "signed", response
    return {h.name: h.value for h in response.signed.headers}


@pytest.fixture(scope="module")
def org(server) -> str:
    return make_tenant(server, "outbound").organization_id


def test_o1_bearer(server, org) -> None:
    created = create(
        server,
        organization_id=org,
        name="b",
        scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
        secrets={"bearer_token": "tok-123"},
    )
    assert headers_of(sign(server, created.credential.id)) == {"Authorization": "Bearer tok-123"}


def test_o2_basic_rfc7617(server, org) -> None:
    created = create(
        server,
        organization_id=org,
        name="basic",
        scheme=admin_pb2.OUTBOUND_SCHEME_BASIC,
        username="hooks",
        secrets={"password": "p@ss:wörd"},
    )
    value = headers_of(sign(server, created.credential.id))["Authorization"]
    assert value.startswith("Basic ")
    assert base64.b64decode(value[6:]).decode() == "hooks:p@ss:wörd"


def test_o5_standard_webhooks_signature_verifies_with_the_official_package(server, org) -> None:
    created = create(
        server, organization_id=org, name="signed", scheme=admin_pb2.OUTBOUND_SCHEME_NONE, sign_payload=True
    )
    secret = created.payload_signing_secret
    assert secret.startswith("whsec_")
    headers = headers_of(sign(server, created.credential.id, message_id="msg_1"))
    assert headers["webhook-id"] == "msg_1"
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)


def test_o5_combined_with_bearer_and_a_generated_message_id(server, org) -> None:
    created = create(
        server,
        organization_id=org,
        name="both",
        scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
        sign_payload=True,
        secrets={"bearer_token": "t"},
    )
    headers = headers_of(sign(server, created.credential.id))
    assert headers["Authorization"] == "Bearer t"
    assert headers["webhook-id"].startswith("msg_")
    Webhook(created.payload_signing_secret).verify(BODY, headers)


def test_o6_rotation_overlap_signs_with_both_secrets(server, org) -> None:
    created = create(
        server, organization_id=org, name="rot", scheme=admin_pb2.OUTBOUND_SCHEME_NONE, sign_payload=True
    )
    old = created.payload_signing_secret
    rotated = server.admin().RotateOutboundCredential(
        admin_pb2.RotateOutboundCredentialRequest(
            id=created.credential.id, regenerate_payload_signing_secret=True, overlap_seconds=600
        ),
        metadata=server.admin_metadata,
    )
    new = rotated.payload_signing_secret
    assert new
    assert new != old
    headers = headers_of(sign(server, created.credential.id))
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)  # receivers still on the old secret verify
    Webhook(new).verify(BODY, headers)
    server.admin().RotateOutboundCredential(
        admin_pb2.RotateOutboundCredentialRequest(
            id=created.credential.id, regenerate_payload_signing_secret=True
        ),
        metadata=server.admin_metadata,
    )
    headers = headers_of(sign(server, created.credential.id))
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(BODY, headers)


def test_o6_secrets_are_sealed_and_never_returned(server, org) -> None:
    created = create(
        server,
        organization_id=org,
        name="sealed",
        scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
        sign_payload=True,
        secrets={"bearer_token": "very-secret-bearer"},
    )
    fetched = server.admin().GetOutboundCredential(
        admin_pb2.GetOutboundCredentialRequest(id=created.credential.id), metadata=server.admin_metadata
    )
    listed = server.admin().ListOutboundCredentials(
        admin_pb2.ListOutboundCredentialsRequest(organization_id=org), metadata=server.admin_metadata
    )
    for message in (fetched, listed, created.credential):
        assert b"very-secret-bearer" not in message.SerializeToString()
    assert created.payload_signing_secret.encode() not in fetched.SerializeToString()
    with sqlite3.connect(server.data_dir / "watchword.db") as connection:
        dump = "\n".join(connection.iterdump())
    assert "very-secret-bearer" not in dump
    assert created.payload_signing_secret not in dump


def test_o4_private_key_jwt_credential_shows_its_public_key_only(server, org) -> None:
    created = create(
        server,
        organization_id=org,
        name="pkjwt",
        scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
        token_url="https://idp.customer.example/oauth/token",
        client_id="watchword",
        client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_PRIVATE_KEY_JWT,
        extra_form_fields=[common_pb2.KeyValue(name="audience", value="https://api.customer.example")],
    )
    jwk = json.loads(created.credential.public_jwk)
    assert (jwk["kty"], jwk["alg"]) == ("EC", "ES256")
    assert not {"d", "p", "q"} & set(jwk)


def test_deactivated_and_unknown_credentials_are_not_retryable_errors(server, org) -> None:
    created = create(
        server,
        organization_id=org,
        name="d",
        scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
        secrets={"bearer_token": "x"},
    )
    server.admin().DeactivateOutboundCredential(
        admin_pb2.DeactivateOutboundCredentialRequest(id=created.credential.id),
        metadata=server.admin_metadata,
    )
    error = sign(server, created.credential.id).error
    assert (error.reason, error.retryable) == ("outbound_credential_deactivated", False)
    assert sign(server, "0123456789abcdef").error.reason == "outbound_credential_unknown"


def test_invalid_outbound_requests_are_invalid_argument(server, org) -> None:
    cases = [
        {"organization_id": org, "name": "x", "scheme": admin_pb2.OUTBOUND_SCHEME_BEARER},
        {
            "organization_id": org,
            "name": "x",
            "scheme": admin_pb2.OUTBOUND_SCHEME_BASIC,
            "username": "a:b",
            "secrets": {"password": "p"},
        },
        {"organization_id": org, "name": "x", "scheme": admin_pb2.OUTBOUND_SCHEME_NONE},
        {
            "organization_id": org,
            "name": "x",
            "scheme": admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
            "token_url": "ftp://x",
            "client_id": "c",
            "client_auth_method": 2,
            "secrets": {"client_secret": "s"},
        },
        {
            "organization_id": org,
            "name": "x",
            "scheme": admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
            "token_url": "https://t",
            "client_id": "c",
            "client_auth_method": 2,
            "secrets": {"client_secret": "s"},
            "extra_form_fields": [common_pb2.KeyValue(name="grant_type", value="password")],
        },
        {
            "organization_id": org,
            "name": "x",
            "scheme": admin_pb2.OUTBOUND_SCHEME_NONE,
            "sign_payload": True,
            "secrets": {"payload_signing_secret": "not-whsec"},
        },
    ]
    for fields in cases:
        with pytest.raises(grpc.RpcError) as caught:
            create(server, **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
    with pytest.raises(grpc.RpcError) as caught:
        server.auth().SignOutbound(
            auth_pb2.SignOutboundRequest(outbound_credential_id="x", url="not a url"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_o3_client_credentials_through_the_server_with_caching_and_401_refetch(tmp_path) -> None:
    from support.server import WatchwordProcess
    from support.token_server import Client, TokenServer

    with TokenServer() as token_server:
        token_server.register(Client(client_id="watchword-hooks", secret="s3cret"))
        env = {"WATCHWORD_OUTBOUND_ALLOW_PRIVATE_TOKEN_URLS": "true"}
        with WatchwordProcess(tmp_path / "data", env=env) as server:
            org = make_tenant(server, "o3").organization_id
            created = create(
                server,
                organization_id=org,
                name="oauth",
                scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
                token_url=token_server.token_url,
                client_id="watchword-hooks",
                client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
                secrets={"client_secret": "s3cret"},
            )
            first = headers_of(sign(server, created.credential.id))["Authorization"]
            again = headers_of(sign(server, created.credential.id))["Authorization"]
            assert first == again
            assert first.startswith("Bearer ")
            assert token_server.request_count == 1, "the token is cached"
            request = auth_pb2.SignOutboundRequest(
                outbound_credential_id=created.credential.id, url=URL, body=BODY, previous_token_rejected=True
            )
            headers_of(server.auth().SignOutbound(request, metadata=server.admin_metadata, timeout=10))
            # A token fetched seconds ago is kept even when a delivery reports 401: a receiver that answers
            # 401 to everything must not turn every delivery into a token request.
            assert token_server.request_count == 1
            time.sleep(5.2)
            headers_of(server.auth().SignOutbound(request, metadata=server.admin_metadata, timeout=10))
            assert token_server.request_count == 2, "a 401 reported back fetches a fresh token"


def test_o3_token_urls_on_private_networks_are_refused_by_default(server, org) -> None:
    created = create(
        server,
        organization_id=org,
        name="ssrf",
        scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
        token_url="http://169.254.169.254/latest/meta-data",
        client_id="c",
        client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
        secrets={"client_secret": "s"},
    )
    error = sign(server, created.credential.id).error
    assert (error.reason, error.retryable) == ("token_url_forbidden", False)


def test_only_allowed_callers_may_sign(server, org) -> None:
    """SignOutbound hands out what proves Watchword to customers: an admin token, or a credential of the
    same organization holding `outbound.sign`, may ask; nobody else."""
    from support.tenants import STATIC_TOKEN, create_credential, make_tenant

    created = create(
        server,
        organization_id=org,
        name="guarded",
        scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
        secrets={"bearer_token": "guarded"},
    )
    request = auth_pb2.SignOutboundRequest(outbound_credential_id=created.credential.id, url=URL, body=BODY)
    with pytest.raises(grpc.RpcError) as missing:
        server.auth().SignOutbound(request, timeout=10)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    delivery = create_credential(
        server, kind=STATIC_TOKEN, organization_id=org, name="delivery", permissions=["outbound.sign"]
    )
    signed = server.auth().SignOutbound(
        request, metadata=(("authorization", f"Bearer {delivery.secret}"),), timeout=10
    )
    assert headers_of(signed) == {"Authorization": "Bearer guarded"}
    other_org = make_tenant(server, "other-signer").organization_id
    foreign = create_credential(
        server, kind=STATIC_TOKEN, organization_id=other_org, name="d", permissions=["outbound.sign"]
    )
    ungranted = create_credential(
        server, kind=STATIC_TOKEN, organization_id=org, name="d", permissions=["event.send"]
    )
    for token in (foreign.secret, ungranted.secret, "wwst_garbage"):
        with pytest.raises(grpc.RpcError) as refused:
            server.auth().SignOutbound(request, metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


# ---- issue #12: header injection (O1-O5), token URLs parsed once, callers judged as Authorize judges ----


def refused_field(server, **fields: object) -> str:
    """Create must fail with INVALID_ARGUMENT; the ErrorInfo names the field."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    with pytest.raises(grpc.RpcError) as caught:
        create(server, **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
    status = rpc_status.from_call(caught.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.metadata["field"]


INJECTED = ["t\r\nX-Injected: 1", "t\nX: 1", "t\x00", "t\u0085"]


@pytest.mark.parametrize("token", [*INJECTED, " t", "t t", "tök"])
def test_o1_a_bearer_token_a_header_cannot_carry_is_refused_at_creation(server, org, token: str) -> None:
    bearer = {"organization_id": org, "name": "b", "scheme": admin_pb2.OUTBOUND_SCHEME_BEARER}
    assert refused_field(server, **bearer, secrets={"bearer_token": token}) == "secrets.bearer_token"


def test_o1_o2_rotation_checks_new_secrets_as_creation_does(server, org) -> None:
    created = create(
        server,
        organization_id=org,
        name="r",
        scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
        secrets={"bearer_token": "good"},
    )
    with pytest.raises(grpc.RpcError) as caught:
        server.admin().RotateOutboundCredential(
            admin_pb2.RotateOutboundCredentialRequest(
                id=created.credential.id, secrets=admin_pb2.OutboundSecrets(bearer_token="t\r\nX: 1")
            ),
            metadata=server.admin_metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert headers_of(sign(server, created.credential.id)) == {"Authorization": "Bearer good"}


@pytest.mark.parametrize("password", INJECTED)
def test_o2_a_password_with_control_characters_is_refused_at_creation(server, org, password: str) -> None:
    basic = {"organization_id": org, "name": "b", "scheme": admin_pb2.OUTBOUND_SCHEME_BASIC}
    fields = basic | {"username": "hooks", "secrets": {"password": password}}
    assert refused_field(server, **fields) == "secrets.password"
    fields = basic | {"username": "ho\r\noks", "secrets": {"password": "p"}}
    assert refused_field(server, **fields) == "credential.username"


@pytest.mark.parametrize(
    "message_id", ["msg\r\nX-Injected: 1", "msg_1.1700000000", "msg 1", "msg\u200b1", "m" * 256]
)
def test_o5_a_message_id_outside_the_standard_webhooks_charset_is_invalid_argument(
    server, org, message_id: str
) -> None:
    created = create(
        server, organization_id=org, name="s", scheme=admin_pb2.OUTBOUND_SCHEME_NONE, sign_payload=True
    )
    with pytest.raises(grpc.RpcError) as caught:
        sign(server, created.credential.id, message_id=message_id)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "X-Injected" not in (caught.value.details() or "")
    uuid_id = "0b7e6b2e-51f0-4c4e-9a51-3bd3e1f8b0a2"
    assert headers_of(sign(server, created.credential.id, message_id=uuid_id))["webhook-id"] == uuid_id


@pytest.mark.parametrize(
    "token_url",
    [
        "http://0177.0.0.1/token",  # an octal IPv4 form the fetcher cannot parse
        "https://\uff11\uff12\uff17.0.0.1/token",  # full-width digits
        " https://token.example/token",
        "https://token.example/token ",
        "https://token.example:99999/token",
        "https://tok%65n.example/token",
        "https://user:pw@token.example/token",
        "https://token.example/t\r\nx",
    ],
)
def test_o3_a_token_url_the_fetcher_cannot_parse_is_refused_at_creation(server, org, token_url: str) -> None:
    fields = {
        "organization_id": org,
        "name": "u",
        "scheme": admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
        "token_url": token_url,
        "client_id": "c",
        "client_auth_method": admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
        "secrets": {"client_secret": "s"},
    }
    assert refused_field(server, **fields) == "credential.token_url"


def test_o1_c1_a_user_whose_role_grants_outbound_sign_may_sign_as_authorize_says(tmp_path) -> None:
    """SignOutbound asks Authorize's rule: a C1 user whose role grants `outbound.sign` (admin in the
    default catalogue) signs; an editor, or an admin of another organization, does not; both answers
    match what Authorize says for the same token."""
    from support.jwks_server import JwksServer
    from support.server import WatchwordProcess

    with JwksServer(algorithms=("ES256",)) as idp:
        config = tmp_path / "watchword.toml"
        config.write_text(
            f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["hook0-api"]\njwks_uri = "{idp.jwks_uri}"\n'
            'allow_insecure_http = true\nroles_claim = "roles"\norganization_claim = "org"\n'
        )
        with WatchwordProcess(tmp_path / "data", args=["--config", str(config)]) as server:
            org = make_tenant(server, "c1-signer").organization_id
            other = make_tenant(server, "c1-other").organization_id
            created = create(
                server,
                organization_id=org,
                name="c1",
                scheme=admin_pb2.OUTBOUND_SCHEME_BEARER,
                secrets={"bearer_token": "for-users"},
            )
            request = auth_pb2.SignOutboundRequest(
                outbound_credential_id=created.credential.id, url=URL, body=BODY
            )
            now = int(time.time())
            for role, in_org, may in (("admin", org, True), ("editor", org, False), ("admin", other, False)):
                token = idp.sign(
                    {"iss": idp.issuer, "aud": "hook0-api", "sub": f"u-{role}", "iat": now,
                     "exp": now + 300, "roles": [role], "org": in_org}
                )  # fmt: skip
                authorized = server.auth().Authorize(
                    auth_pb2.AuthorizeRequest(
                        credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token)),
                        action="outbound.sign",
                        resource=auth_pb2.Resource(organization_id=org),
                    ),
                    timeout=10,
                )
                assert authorized.decision.allowed is may, role
                metadata = (("authorization", f"Bearer {token}"),)
                if may:
                    signed = server.auth().SignOutbound(request, metadata=metadata, timeout=10)
                    assert headers_of(signed) == {"Authorization": "Bearer for-users"}
                else:
                    with pytest.raises(grpc.RpcError) as refused:
                        server.auth().SignOutbound(request, metadata=metadata, timeout=10)
                    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_o4_extra_form_fields_the_fetcher_would_refuse_are_refused_at_creation(server, org) -> None:
    """One validator: a name given twice (RFC 6749 §3.2) was stored and then failed every signing."""
    fields = {
        "organization_id": org,
        "name": "twice",
        "scheme": admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
        "token_url": "https://token.example/token",
        "client_id": "c",
        "client_auth_method": admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
        "secrets": {"client_secret": "s"},
        "extra_form_fields": [
            common_pb2.KeyValue(name="audience", value="a"),
            common_pb2.KeyValue(name="audience", value="b"),
        ],
    }
    assert refused_field(server, **fields) == "credential.extra_form_fields[1].name"
