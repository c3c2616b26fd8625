"""C10 through the real server's own mutual TLS: `tls_client_auth = "require"` on the gRPC port, clients
with certificates generated here calling through the generated stubs. The handshake refuses what is not
a valid client certificate of the configured CA; what passes is mapped to its registered service
identity, and answered with a reason when it cannot be."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

import watchword_client
from watchword import reasons
from watchword.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, common_pb2

from support.certificates import Issued, certificate_authority, client_certificate, self_signed
from support.cli import refused_start, run_cli
from support.server import WatchwordProcess

SPIFFE_ID = "spiffe://example.org/ns/billing/sa/worker"
PEER = common_pb2.CredentialSource(peer_certificate=common_pb2.PeerCertificate())


@dataclass(frozen=True)
class World:
    watchword: WatchwordProcess
    server_ca: bytes
    ca: Issued
    admin: admin_pb2_grpc.AdminServiceStub
    organization: str
    application: str
    credential: str
    directory: Path


def _secure(address: str, server_ca: bytes, client: Issued | None) -> grpc.Channel:
    keys = (client.key_pem, client.pem) if client else (None, None)
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(server_ca, *keys))


def _channel(world: World, client: Issued | None) -> grpc.Channel:
    return _secure(world.watchword.address, world.server_ca, client)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("c10")
    server = self_signed(directory, ips=("127.0.0.1",), dns=("localhost",))
    ca = certificate_authority()
    (directory / "clients-ca.pem").write_bytes(ca.pem)
    env = {
        "WATCHWORD_TLS_CERT_FILE": str(server.certificate),
        "WATCHWORD_TLS_KEY_FILE": str(server.private_key),
        "WATCHWORD_TLS_CLIENT_CA_FILE": str(directory / "clients-ca.pem"),
        "WATCHWORD_TLS_CLIENT_AUTH": "require",
        "WATCHWORD_CLIENT_CERTIFICATE_TRUST_DOMAINS": "example.org",
    }
    with WatchwordProcess(directory / "data", env=env) as watchword:
        operator = client_certificate(ca, spiffe_id="spiffe://example.org/ops/admin-cli")
        channel = _secure(watchword.address, server.ca_pem, operator)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        metadata = watchword.admin_metadata
        organization = admin.CreateOrganization(
            admin_pb2.CreateOrganizationRequest(name="w"), metadata=metadata
        )
        application = admin.CreateApplication(
            admin_pb2.CreateApplicationRequest(organization_id=organization.id, name="a"), metadata=metadata
        )
        created = admin.CreateCredential(
            admin_pb2.CreateCredentialRequest(
                kind=common_pb2.CREDENTIAL_KIND_CLIENT_CERTIFICATE,
                organization_id=organization.id,
                name="billing worker",
                permissions=["event.send"],
                service_identity=SPIFFE_ID,
            ),
            metadata=metadata,
        )
        yield World(
            watchword,
            server.ca_pem,
            ca,
            admin,
            organization.id,
            application.id,
            created.credential.id,
            directory,
        )
        channel.close()


def _authorize(world: World, client: Issued) -> auth_pb2.AuthorizeResponse:
    with _channel(world, client) as channel:
        request = auth_pb2.AuthorizeRequest(
            credential=PEER,
            action="event.send",
            resource=auth_pb2.Resource(application_id=world.application, event_type="order.paid"),
        )
        return auth_pb2_grpc.AuthServiceStub(channel).Authorize(request, timeout=10)


def test_c10_a_good_certificate_is_its_service_identity(world: World) -> None:
    good = client_certificate(world.ca, spiffe_id=SPIFFE_ID)
    answer = _authorize(world, good)
    assert answer.decision.allowed, answer
    assert answer.decision.rule == "S3"
    assert answer.principal.kind == common_pb2.CREDENTIAL_KIND_CLIENT_CERTIFICATE
    assert answer.principal.transport == common_pb2.TRANSPORT_CLIENT_CERTIFICATE
    assert answer.principal.credential_id == world.credential
    assert answer.principal.organization_id == world.organization
    with _channel(world, good) as channel:
        authenticated = auth_pb2_grpc.AuthServiceStub(channel).Authenticate(
            auth_pb2.AuthenticateRequest(credential=PEER), timeout=10
        )
    assert authenticated.principal.credential_id == world.credential


def test_c10_the_python_client_asks_with_its_own_certificate(world: World) -> None:
    good = client_certificate(world.ca, spiffe_id=SPIFFE_ID)
    credentials = grpc.ssl_channel_credentials(world.server_ca, good.key_pem, good.pem)
    with watchword_client.WatchwordClient(world.watchword.address, channel_credentials=credentials) as client:
        resource = watchword_client.Resource(application_id=world.application, event_type="order.paid")
        answer = client.authorize(watchword_client.PeerCertificate(), "event.send", resource)
    assert answer.decision.allowed
    assert answer.principal is not None
    assert answer.principal.kind is watchword_client.CredentialKind.CLIENT_CERTIFICATE
    assert answer.principal.transport is watchword_client.Transport.CLIENT_CERTIFICATE


def test_c10_batch_entries_may_each_name_the_peer_certificate(world: World) -> None:
    good = client_certificate(world.ca, spiffe_id=SPIFFE_ID)
    resource = auth_pb2.Resource(application_id=world.application, event_type="order.paid")
    entries = [
        auth_pb2.AuthorizeRequest(credential=PEER, action="event.send", resource=resource),
        auth_pb2.AuthorizeRequest(credential=PEER, action="application.create", resource=resource),
    ]
    with _channel(world, good) as channel:
        answer = auth_pb2_grpc.AuthServiceStub(channel).AuthorizeBatch(
            auth_pb2.AuthorizeBatchRequest(entries=entries), timeout=10
        )
    assert [result.decision.allowed for result in answer.results] == [True, False]
    assert answer.results[1].decision.reason == reasons.ACTION_NOT_GRANTED


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown identity", reasons.SERVICE_IDENTITY_UNKNOWN),
        ("wrong SAN", reasons.CLIENT_CERTIFICATE_SAN_INVALID),
        ("other trust domain", reasons.CLIENT_CERTIFICATE_SAN_INVALID),
    ],
)
def test_c10_a_certificate_that_passes_the_handshake_can_still_be_refused(
    world: World, case: str, reason: str
) -> None:
    certificates = {
        "unknown identity": client_certificate(
            world.ca, spiffe_id="spiffe://example.org/ns/billing/sa/other"
        ),
        "wrong SAN": client_certificate(world.ca, spiffe_id=SPIFFE_ID, uris=("https://worker.example",)),
        "other trust domain": client_certificate(world.ca, spiffe_id="spiffe://evil.example/ns/billing"),
    }
    answer = _authorize(world, certificates[case])
    assert not answer.decision.allowed
    assert answer.refusal.reason == reason, answer


@pytest.mark.parametrize("case", ["expired", "wrong CA", "no certificate", "server certificate"])
def test_c10_the_handshake_refuses_what_is_no_valid_client_certificate(world: World, case: str) -> None:
    hour = datetime.timedelta(hours=1)
    from cryptography.x509.oid import ExtendedKeyUsageOID

    certificates = {
        "expired": client_certificate(world.ca, spiffe_id=SPIFFE_ID, valid_from=-2 * hour, valid_for=hour),
        "wrong CA": client_certificate(certificate_authority("another CA"), spiffe_id=SPIFFE_ID),
        "no certificate": None,
        "server certificate": client_certificate(
            world.ca, spiffe_id=SPIFFE_ID, usages=(ExtendedKeyUsageOID.SERVER_AUTH,)
        ),
    }
    with pytest.raises(grpc.RpcError) as failure:
        _authorize(world, certificates[case])
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def test_c10_a_peer_certificate_source_without_one_is_refused_not_guessed(world: World) -> None:
    # An ordinary credential over the same mutual TLS is judged by itself: the connection's certificate is
    # used only when asked for.
    good = client_certificate(world.ca, spiffe_id=SPIFFE_ID)
    with _channel(world, good) as channel:
        answer = auth_pb2_grpc.AuthServiceStub(channel).Authenticate(
            auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(bare={"token": "wwak_x"})),
            timeout=10,
        )
    assert answer.refusal.reason == reasons.CREDENTIAL_MALFORMED


def test_c10_the_cli_registers_an_identity_and_deactivation_refuses_it_at_once(world: World) -> None:
    operator = client_certificate(world.ca, spiffe_id="spiffe://example.org/ops/admin-cli")
    cert_file, key_file = operator.write(world.directory, "operator")
    (world.directory / "server-ca.pem").write_bytes(world.server_ca)
    spiffe_id = "spiffe://example.org/ns/reports/sa/cron"
    settings = {
        "WATCHWORD_ADMIN_TOKEN": world.watchword.admin_token,
        "WATCHWORD_ADDRESS": world.watchword.address,
        "WATCHWORD_CA_FILE": str(world.directory / "server-ca.pem"),
        "WATCHWORD_CLIENT_CERT_FILE": str(cert_file),
        "WATCHWORD_CLIENT_KEY_FILE": str(key_file),
    }
    created = run_cli(
        "admin", "credential", "create", "--kind", "client-certificate", "--org", world.organization,
        "--name", "reports", "--permission", "event.send", "--service-identity", spiffe_id,
        settings=settings,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    credential = json.loads(created.stdout)["credential"]
    assert credential["service_identity"] == spiffe_id
    assert "secret" not in json.loads(created.stdout)  # nothing to show: no secret exists
    workload = client_certificate(world.ca, spiffe_id=spiffe_id)
    assert _authorize(world, workload).decision.allowed
    again = run_cli(
        "admin", "credential", "create", "--kind", "client-certificate", "--org", world.organization,
        "--name", "twice", "--service-identity", spiffe_id, settings=settings,
    )  # fmt: skip
    assert again.returncode != 0
    assert "service_identity" in again.stderr
    deactivated = run_cli("admin", "credential", "deactivate", credential["id"], settings=settings)
    assert deactivated.returncode == 0, deactivated.stderr
    answer = _authorize(world, workload)
    assert not answer.decision.allowed
    assert answer.refusal.reason == reasons.CREDENTIAL_DEACTIVATED
    rotated = run_cli("admin", "credential", "rotate", credential["id"], settings=settings)
    assert rotated.returncode != 0


def test_c10_a_bad_setup_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    base = {"WATCHWORD_DATA_DIR": str(tmp_path / "data"), "WATCHWORD_PORT": "0", "WATCHWORD_HTTP_PORT": "0"}
    unreadable = refused_start({**base, "WATCHWORD_TLS_CLIENT_CA_FILE": str(not_pem)})
    assert "tls_client_ca_file" in unreadable.stderr
    no_tls = refused_start({**base, "WATCHWORD_TLS_CLIENT_AUTH": "require"})
    assert "tls_client_ca_file" in no_tls.stderr
    no_ca = refused_start({**base, "WATCHWORD_XFCC_TRUSTED": "true"})
    assert "tls_client_ca_file" in no_ca.stderr


def test_c10_the_cli_wants_both_halves_of_its_key_pair(tmp_path: Path) -> None:
    settings = {"WATCHWORD_ADMIN_TOKEN": "wwad_x", "WATCHWORD_CLIENT_CERT_FILE": str(tmp_path / "c.crt")}
    result = run_cli("admin", "org", "list", settings=settings)
    assert result.returncode != 0
    assert "--client-key-file" in result.stderr
    assert "Traceback" not in result.stderr


def _issue(world: World, client: Issued, client_id: str) -> auth_pb2.IssueTokenResponse:
    grant = auth_pb2.ClientCredentialsGrant(client=auth_pb2.ClientAuthentication(client_id=client_id))
    with _channel(world, client) as channel:
        return auth_pb2_grpc.AuthServiceStub(channel).IssueToken(
            auth_pb2.IssueTokenRequest(client_credentials=grant), timeout=10
        )


def test_c10_issue_token_takes_the_connections_certificate_as_tls_client_auth(world: World) -> None:
    # RFC 8705 §2.1 over the gRPC port's mutual TLS, as at POST /oauth/token (tests/server/test_c10_https.py).
    good = client_certificate(world.ca, spiffe_id=SPIFFE_ID)
    issued = _issue(world, good, world.credential)
    assert issued.HasField("token"), issued
    assert issued.token.scope == "event.send"
    with _channel(world, good) as channel:
        bearer = common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=issued.token.access_token))
        answer = auth_pb2_grpc.AuthServiceStub(channel).Authenticate(
            auth_pb2.AuthenticateRequest(credential=bearer), timeout=10
        )
    assert answer.principal.credential_id == world.credential
    other = client_certificate(world.ca, spiffe_id="spiffe://example.org/ns/billing/sa/other")
    assert _issue(world, other, world.credential).error.error == "invalid_client"
    assert _issue(world, good, "AAAAAAAAAAAAAAAA").error.error == "invalid_client"
