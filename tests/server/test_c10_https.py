"""C10 over Watchword's own HTTPS: the OAuth HTTP endpoints over TLS with client certificates (RFC 8705 §2,
`tls_client_auth`), on the real server, with certificates generated here, httpx and authlib's OAuth2Client
as the clients. A service identity gets a C8 token with its certificate alone, which then works at
Authenticate; introspection and revocation take the same authentication. The TLS handshake refuses an
expired certificate, one of another CA, and none where one is required; what passes it but is not the
client's registered identity is `invalid_client` with a reason code."""

from __future__ import annotations

import datetime
import socket
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from watchword import reasons
from watchword.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, common_pb2

from support.certificates import Issued, TlsFiles, certificate_authority, client_certificate, self_signed
from support.cli import refused_start
from support.server import WatchwordProcess

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib announces a future move of its httpx integration
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SPIFFE_ID = "spiffe://example.org/ns/billing/sa/worker"
OTHER_ID = "spiffe://example.org/ns/shipping/sa/worker"
HOUR = datetime.timedelta(hours=1)
CLIENT_CERTIFICATE = common_pb2.CREDENTIAL_KIND_CLIENT_CERTIFICATE


@dataclass(frozen=True)
class World:
    watchword: WatchwordProcess
    server: TlsFiles
    ca: Issued
    admin: admin_pb2_grpc.AdminServiceStub
    organization: str
    application: str
    credential: str  # the C10 credential of SPIFFE_ID
    other: str  # the C10 credential of OTHER_ID
    directory: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.watchword.http_port}"

    def tls(self, client: Issued | None = None, name: str = "client") -> ssl.SSLContext:
        """A client context trusting the server, presenting `client`'s certificate when given."""
        context = ssl.create_default_context(cafile=str(self.server.certificate))
        if client is not None:
            certificate, key = client.write(self.directory, name)
            context.load_cert_chain(certificate, key)
        return context


def _grpc_channel(watchword: WatchwordProcess, server_ca: bytes) -> grpc.Channel:
    return grpc.secure_channel(watchword.address, grpc.ssl_channel_credentials(server_ca))


def _service_identity(
    admin: admin_pb2_grpc.AdminServiceStub, metadata, organization: str, identity: str
) -> str:
    created = admin.CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=CLIENT_CERTIFICATE,
            organization_id=organization,
            name=identity.rsplit("/", 1)[-1],
            permissions=["event.send", "token.introspect", "token.revoke"],
            service_identity=identity,
        ),
        metadata=metadata,
    )
    return created.credential.id


def _https_env(directory: Path, server: TlsFiles, client_auth: str) -> dict[str, str]:
    return {
        "WATCHWORD_TLS_CERT_FILE": str(server.certificate),
        "WATCHWORD_TLS_KEY_FILE": str(server.private_key),
        "WATCHWORD_TLS_CLIENT_CA_FILE": str(directory / "clients-ca.pem"),
        "WATCHWORD_CLIENT_CERTIFICATE_TRUST_DOMAINS": "example.org",
        "WATCHWORD_HTTP_TLS": "true",
        "WATCHWORD_HTTP_TLS_CLIENT_AUTH": client_auth,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("c10-https")
    server = self_signed(directory, ips=("127.0.0.1",), dns=("localhost",))
    ca = certificate_authority()
    (directory / "clients-ca.pem").write_bytes(ca.pem)
    env = _https_env(directory, server, "optional")
    with WatchwordProcess(directory / "data", env=env) as watchword:
        channel = _grpc_channel(watchword, server.ca_pem)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        metadata = watchword.admin_metadata
        organization = admin.CreateOrganization(
            admin_pb2.CreateOrganizationRequest(name="w"), metadata=metadata
        )
        application = admin.CreateApplication(
            admin_pb2.CreateApplicationRequest(organization_id=organization.id, name="a"), metadata=metadata
        )
        credential = _service_identity(admin, metadata, organization.id, SPIFFE_ID)
        other = _service_identity(admin, metadata, organization.id, OTHER_ID)
        yield World(
            watchword, server, ca, admin, organization.id, application.id, credential, other, directory
        )
        channel.close()


def _token(world: World, client: Issued | None, client_id: str, **form: str) -> httpx.Response:
    with httpx.Client(verify=world.tls(client)) as http:
        fields = {"grant_type": "client_credentials", "client_id": client_id, **form}
        return http.post(f"{world.base}/oauth/token", data=fields)


def _good(world: World) -> Issued:
    return client_certificate(world.ca, spiffe_id=SPIFFE_ID)


def test_c10_a_service_identity_gets_a_token_with_its_certificate_and_it_works(world: World) -> None:
    answer = _token(world, _good(world), world.credential)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == {"event.send", "token.introspect", "token.revoke"}
    with _grpc_channel(world.watchword, world.server.ca_pem) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        bearer = common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=body["access_token"]))
        principal = auth.Authenticate(auth_pb2.AuthenticateRequest(credential=bearer), timeout=10).principal
        assert principal.kind == common_pb2.CREDENTIAL_KIND_WATCHWORD_TOKEN
        assert principal.credential_id == world.credential
        assert principal.organization_id == world.organization
        resource = auth_pb2.Resource(application_id=world.application, event_type="order.paid")
        decision = auth.Authorize(
            auth_pb2.AuthorizeRequest(credential=bearer, action="event.send", resource=resource), timeout=10
        ).decision
    assert decision.allowed, decision


def test_c10_authlib_fetches_a_token_with_tls_client_auth(world: World) -> None:
    # authlib's client has no RFC 8705 method of its own: `none` sends client_id in the form, and the
    # certificate goes in the TLS handshake (httpx's SSL context).
    with OAuth2Client(
        client_id=world.credential, token_endpoint_auth_method="none", verify=world.tls(_good(world))
    ) as client:
        token = client.fetch_token(f"{world.base}/oauth/token", grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] > 0


def test_c10_introspection_and_revocation_take_the_certificate_too(world: World) -> None:
    good = _good(world)
    token = _token(world, good, world.credential).json()["access_token"]
    with httpx.Client(verify=world.tls(good)) as http:
        asked = {"token": token, "client_id": world.credential}
        introspected = http.post(f"{world.base}/oauth/introspect", data=asked)
        assert introspected.status_code == 200, introspected.text
        assert introspected.json()["active"] is True
        assert introspected.json()["client_id"] == world.credential
        assert http.post(f"{world.base}/oauth/revoke", data=asked).status_code == 200
        assert http.post(f"{world.base}/oauth/introspect", data=asked).json() == {"active": False}
    with httpx.Client(verify=world.tls()) as http:  # no certificate: no caller
        refused = http.post(f"{world.base}/oauth/introspect", data=asked)
    assert refused.status_code == 401
    assert refused.json()["reason"] == reasons.CLIENT_CERTIFICATE_MISSING


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another identity's certificate", reasons.CLIENT_CERTIFICATE_MISMATCH),
        ("a client_id that is no credential", reasons.CLIENT_CERTIFICATE_MISMATCH),
        ("wrong SAN", reasons.CLIENT_CERTIFICATE_SAN_INVALID),
        ("other trust domain", reasons.CLIENT_CERTIFICATE_SAN_INVALID),
        ("unregistered identity", reasons.SERVICE_IDENTITY_UNKNOWN),
        ("no certificate", reasons.CLIENT_CERTIFICATE_MISSING),
    ],
)
def test_c10_what_passes_the_handshake_but_is_not_the_client_is_invalid_client(
    world: World, case: str, reason: str
) -> None:
    ca = world.ca
    certificates: dict[str, tuple[Issued | None, str]] = {
        "another identity's certificate": (client_certificate(ca, spiffe_id=OTHER_ID), world.credential),
        "a client_id that is no credential": (_good(world), "AAAAAAAAAAAAAAAA"),
        "wrong SAN": (
            client_certificate(ca, spiffe_id=SPIFFE_ID, uris=("https://w.example",)),
            world.credential,
        ),
        "other trust domain": (client_certificate(ca, spiffe_id="spiffe://evil.example/w"), world.credential),
        "unregistered identity": (client_certificate(ca, spiffe_id=SPIFFE_ID + "-2"), world.credential),
        "no certificate": (None, world.credential),
    }
    client, client_id = certificates[case]
    answer = _token(world, client, client_id)
    assert answer.status_code == 401, answer.text
    body = answer.json()
    assert body["error"] == "invalid_client"
    assert body["reason"] == reason
    assert "Traceback" not in answer.text


def test_c10_a_deactivated_service_identity_gets_no_token(world: World) -> None:
    identity = "spiffe://example.org/ns/billing/sa/retired"
    credential = _service_identity(world.admin, world.watchword.admin_metadata, world.organization, identity)
    retired = client_certificate(world.ca, spiffe_id=identity)
    assert _token(world, retired, credential).status_code == 200
    world.admin.DeactivateCredential(
        admin_pb2.DeactivateCredentialRequest(id=credential), metadata=world.watchword.admin_metadata
    )
    answer = _token(world, retired, credential)
    assert answer.status_code == 401
    assert answer.json()["reason"] == reasons.CREDENTIAL_DEACTIVATED


def test_c10_a_secret_still_wins_over_the_connections_certificate(world: World) -> None:
    # `optional`: C9's methods work as before, certificate or not; a wrong secret is refused as always,
    # with the one answer C9 gives to every refusal (no reason: it would tell client ids apart).
    answer = _token(world, _good(world), world.credential, client_secret="wwoc_not-a-secret")
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_client", "error_description": "client authentication failed"}


def _handshake_refused(world: World, client: Issued | None, port: int | None = None) -> str:
    """The TLS handshake with `client`'s certificate and a request: what the client saw. The server
    aborts the connection; over TLS 1.3 the client learns it at its first read."""
    context = world.tls(client, "handshake")
    port = port or world.watchword.http_port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n")
                return tls.recv(1024).decode("latin-1") or "closed"
        except (ssl.SSLError, ConnectionError) as exc:
            return f"refused: {exc}"


@pytest.mark.parametrize("case", ["expired", "not yet valid", "wrong CA", "server certificate"])
def test_c10_the_handshake_refuses_what_is_no_valid_client_certificate(world: World, case: str) -> None:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca = world.ca
    certificates = {
        "expired": client_certificate(ca, spiffe_id=SPIFFE_ID, valid_from=-2 * HOUR, valid_for=HOUR),
        "not yet valid": client_certificate(ca, spiffe_id=SPIFFE_ID, valid_from=HOUR),
        "wrong CA": client_certificate(certificate_authority("another CA"), spiffe_id=SPIFFE_ID),
        "server certificate": client_certificate(
            ca, spiffe_id=SPIFFE_ID, usages=(ExtendedKeyUsageOID.SERVER_AUTH,)
        ),
    }
    seen = _handshake_refused(world, certificates[case])
    assert not seen.startswith("HTTP/1.1"), seen
    assert _handshake_refused(world, _good(world)).startswith("HTTP/1.1 200"), "the good one is served"


def test_c10_plaintext_to_the_https_port_gets_no_answer(world: World) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.post(f"http://127.0.0.1:{world.watchword.http_port}/oauth/token", data={"grant_type": "x"})
    assert _token(world, _good(world), world.credential).status_code == 200  # the port serves on


def test_c10_tls_1_2_clients_are_served(world: World) -> None:
    # The floor (TLS 1.2, as the gRPC port) is in the server's context: tests/unit/test_https.py.
    context = world.tls(_good(world))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=context) as http:
        fields = {"grant_type": "client_credentials", "client_id": world.credential}
        assert http.post(f"{world.base}/oauth/token", data=fields).status_code == 200


def test_c10_the_metadata_advertises_tls_client_auth_and_https(world: World) -> None:
    with httpx.Client(verify=world.tls()) as http:
        metadata = http.get(f"{world.base}/.well-known/oauth-authorization-server").json()
    assert metadata["token_endpoint"] == f"{world.base}/oauth/token"
    assert metadata["jwks_uri"].startswith("https://")
    for endpoint in ("token", "introspection", "revocation"):
        assert "tls_client_auth" in metadata[f"{endpoint}_endpoint_auth_methods_supported"]
    assert "tls_client_certificate_bound_access_tokens" not in metadata  # no binding (cnf) yet


# ---- `require`, with worker processes, and E4 over TLS ----


@pytest.fixture(scope="module")
def required(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A second server: `http_tls_client_auth = "require"`, two worker processes, E4 over TLS."""
    directory = tmp_path_factory.mktemp("c10-https-require")
    server = self_signed(directory, ips=("127.0.0.1",), dns=("localhost",))
    ca = certificate_authority()
    (directory / "clients-ca.pem").write_bytes(ca.pem)
    env = {
        **_https_env(directory, server, "require"),
        "WATCHWORD_WORKERS": "2",
        "WATCHWORD_EXT_AUTHZ_HTTP_PORT": "0",
        "WATCHWORD_EXT_AUTHZ_HTTP_TLS": "true",
    }
    with WatchwordProcess(directory / "data", env=env) as watchword:
        channel = _grpc_channel(watchword, server.ca_pem)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        metadata = watchword.admin_metadata
        organization = admin.CreateOrganization(
            admin_pb2.CreateOrganizationRequest(name="w"), metadata=metadata
        )
        credential = _service_identity(admin, metadata, organization.id, SPIFFE_ID)
        yield World(watchword, server, ca, admin, organization.id, "", credential, "", directory)
        channel.close()


def test_c10_require_refuses_the_handshake_without_a_certificate(required: World) -> None:
    assert not _handshake_refused(required, None).startswith("HTTP/1.1"), "served without a certificate"


def test_c10_require_serves_every_worker_over_mutual_tls(required: World) -> None:
    # Each connection lands on one of the two workers (SO_REUSEPORT): every one of them must serve.
    for _ in range(8):
        answer = _token(required, _good(required), required.credential)
        assert answer.status_code == 200, answer.text


def test_c10_e4_is_served_over_tls_and_not_in_plaintext(required: World) -> None:
    port = required.watchword.ext_authz_http_port
    with httpx.Client(verify=required.tls()) as http:
        answer = http.get(f"https://127.0.0.1:{port}/orders")
    assert answer.status_code == 403  # decided: no route for it (deny by default), over TLS
    assert answer.json()["reason"] == reasons.ROUTE_NOT_CONFIGURED
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/orders")


def test_c10_a_key_that_is_not_the_certificates_stops_the_start_with_why(tmp_path: Path) -> None:
    # grpc alone would say "cannot listen ... the port is in use".
    server, other = self_signed(tmp_path / "a"), self_signed(tmp_path / "b")
    settings = {
        "WATCHWORD_TLS_CERT_FILE": str(server.certificate),
        "WATCHWORD_TLS_KEY_FILE": str(other.private_key),
        "WATCHWORD_HTTP_TLS": "true",
        "WATCHWORD_DATA_DIR": str(tmp_path / "data"),
    }
    refused = refused_start(settings)
    assert "tls_cert_file and tls_key_file: not a certificate and its private key" in refused.stderr
    assert "port is in use" not in refused.stderr
