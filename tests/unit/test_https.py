"""C10 over HTTPS, in process: the listeners' TLS contexts, the ASGI TLS extension, the settings that
turn them on, and what the metadata advertises."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from watchword import config, https
from watchword.compose.http_servers import client_auth_methods
from watchword.config import options
from watchword.domain import ClientAuthentication, Refusal
from watchword.issue.oauth import CLIENT_REFUSED, client_refused

from support.certificates import TlsFiles, certificate_authority, self_signed


@pytest.fixture
def files(tmp_path: Path) -> TlsFiles:
    (tmp_path / "ca.pem").write_bytes(certificate_authority().pem)
    return self_signed(tmp_path, ips=("127.0.0.1",))


def _environ(files: TlsFiles, **more: str) -> dict[str, str]:
    return {
        "WATCHWORD_TLS_CERT_FILE": str(files.certificate),
        "WATCHWORD_TLS_KEY_FILE": str(files.private_key),
        **{f"WATCHWORD_{name.upper()}": value for name, value in more.items()},
    }


@pytest.mark.parametrize(
    ("client_auth", "mode"),
    [("none", ssl.CERT_NONE), ("optional", ssl.CERT_OPTIONAL), ("require", ssl.CERT_REQUIRED)],
)
def test_c10_the_server_context_is_tls_1_2_or_later_and_asks_as_configured(
    files: TlsFiles, client_auth: https.ClientAuth, mode: ssl.VerifyMode
) -> None:
    ca = files.certificate.parent / "ca.pem"
    context = https.server_context(files.certificate, files.private_key, ca, client_auth)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == mode
    assert len(context.get_ca_certs()) == (0 if client_auth == "none" else 1)
    assert context.options & ssl.OP_NO_COMPRESSION


def test_c10_a_key_that_does_not_match_stops_the_context(files: TlsFiles, tmp_path: Path) -> None:
    other = self_signed(tmp_path / "other")
    with pytest.raises(ssl.SSLError):
        https.server_context(files.certificate, other.private_key)


def test_c10_the_asgi_tls_extension_carries_the_chain_to_the_request() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], _receive: object, _send: object) -> None:
        seen.append(https.client_certificate(scope))

    wrapped = https.with_chain(app, ("-----BEGIN CERTIFICATE-----\nA\n", "-----BEGIN CERTIFICATE-----\nB\n"))
    scope: dict[str, Any] = {"type": "http"}
    asyncio.run(wrapped(scope, None, None))
    assert scope["extensions"]["tls"]["client_cert_chain"][0].endswith("A\n")
    assert seen == ["-----BEGIN CERTIFICATE-----\nA\n-----BEGIN CERTIFICATE-----\nB\n"]
    assert https.client_certificate({"type": "http"}) == ""


def test_c10_no_tls_transport_has_no_peer_chain() -> None:
    class Plain:
        def get_extra_info(self, name: str) -> None:
            return None

    assert https.peer_chain(Plain()) == ()


@pytest.mark.parametrize(
    ("more", "expected"),
    [
        ({"http_tls": "true"}, "need tls_cert_file"),
        ({"ext_authz_http_tls": "true"}, "need tls_cert_file"),
    ],
)
def test_c10_https_needs_the_tls_files(more: dict[str, str], expected: str) -> None:
    environ = {f"WATCHWORD_{name.upper()}": value for name, value in more.items()}
    with pytest.raises(config.ConfigError, match=expected):
        config.load(environ=environ)


@pytest.mark.parametrize(
    ("more", "expected"),
    [
        ({"http_tls_client_auth": "optional"}, "needs http_tls = true and tls_client_ca_file"),
        (
            {"http_tls": "true", "http_tls_client_auth": "require"},
            "needs http_tls = true and tls_client_ca_file",
        ),
        ({"ext_authz_http_tls_client_ca_file": "ca.pem"}, "needs ext_authz_http_tls = true"),
        ({"http_tls_client_auth": "sometimes"}, "http_tls_client_auth"),
    ],
)
def test_c10_client_certificates_on_https_need_their_settings(
    files: TlsFiles, more: dict[str, str], expected: str
) -> None:
    if "ext_authz_http_tls_client_ca_file" in more:
        more = {**more, "ext_authz_http_tls_client_ca_file": str(files.certificate.parent / "ca.pem")}
    with pytest.raises(config.ConfigError, match=expected):
        config.load(environ=_environ(files, **more))


def test_c10_https_settings_become_contexts_and_an_https_base_url(files: TlsFiles) -> None:
    ca = str(files.certificate.parent / "ca.pem")
    settings = config.load(
        environ=_environ(
            files,
            tls_client_ca_file=ca,
            http_tls="true",
            http_tls_client_auth="optional",
            ext_authz_http_port="0",
            ext_authz_http_tls="true",
            ext_authz_http_tls_client_ca_file=ca,
        )
    )
    http = options.oauth_http_tls(settings)
    envoy = options.ext_authz_http_tls(settings)
    assert http is not None
    assert http.verify_mode == ssl.CERT_OPTIONAL
    assert envoy is not None
    assert envoy.verify_mode == ssl.CERT_REQUIRED
    assert options.public_base_url(settings, 8443) == "https://127.0.0.1:8443"
    assert "tls_client_auth" in client_auth_methods(settings)


def test_c10_without_https_client_auth_nothing_changes(files: TlsFiles) -> None:
    settings = config.load(environ=_environ(files))  # TLS for gRPC only
    assert options.oauth_http_tls(settings) is None
    assert options.ext_authz_http_tls(settings) is None
    assert options.public_base_url(settings, 8080) == "http://127.0.0.1:8080"
    assert "tls_client_auth" not in client_auth_methods(settings)
    https_only = config.load(environ=_environ(files, http_tls="true"))
    assert "tls_client_auth" not in client_auth_methods(https_only)


def test_c10_only_certificate_refusals_name_their_reason() -> None:
    refusal = Refusal(reason="client_certificate_mismatch", message="not this client's")
    by_certificate = ClientAuthentication(client_id="x", client_certificate="-----BEGIN CERTIFICATE-----")
    with_secret = ClientAuthentication(client_id="x", client_secret="s", client_certificate="-----BEGIN")
    assert client_refused(refusal, by_certificate).http_fields()["reason"] == "client_certificate_mismatch"
    assert client_refused(refusal, with_secret) is CLIENT_REFUSED
    assert "reason" not in CLIENT_REFUSED.http_fields()
    assert set(client_refused(refusal, by_certificate).fields()) == {"error", "error_description"}


class _Recorded:
    """Stands in for uvicorn's protocol: remembers that the connection was made."""

    def __init__(self, app: https.Asgi) -> None:
        self.app = app
        self.made = False

    def connection_made(self, transport: object) -> None:
        self.made = True


class _Protocol(https.ClientCertificateScope, _Recorded):
    pass


class _TlsWithoutCertificate:
    def getpeercert(self, binary_form: bool = False) -> None:
        return None


class _Transport:
    def __init__(self, tls: object | None) -> None:
        self.tls = tls

    def get_extra_info(self, name: str) -> object | None:
        return self.tls if name == "ssl_object" else None


def test_c10_every_tls_connection_carries_the_extension_even_without_a_certificate() -> None:
    async def app(scope: dict[str, Any], _receive: object, _send: object) -> None:
        return None

    protocol = _Protocol(app)
    protocol.connection_made(_Transport(_TlsWithoutCertificate()))
    scope: dict[str, Any] = {"type": "http"}
    asyncio.run(protocol.app(scope, None, None))
    assert protocol.made
    assert scope["extensions"]["tls"]["client_cert_chain"] == ()
    plain = _Protocol(app)
    plain.connection_made(_Transport(None))
    assert plain.app is app


def test_c10_a_key_that_is_not_the_certificates_is_refused_with_the_settings(
    files: TlsFiles, tmp_path: Path
) -> None:
    other = self_signed(tmp_path / "other")
    environ = {
        "WATCHWORD_TLS_CERT_FILE": str(files.certificate),
        "WATCHWORD_TLS_KEY_FILE": str(other.private_key),
    }
    with pytest.raises(config.ConfigError, match="not a certificate and its private key"):
        config.load(environ=environ)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM")
    environ["WATCHWORD_TLS_KEY_FILE"] = str(garbage)
    with pytest.raises(config.ConfigError, match="tls_cert_file and tls_key_file"):
        config.load(environ=environ)
