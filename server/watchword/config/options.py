"""The settings translated into what each component is built with: the one place a setting becomes an
option object, a parsed list, an address or a bound (the builders in `watchword.compose` only pass these on).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from watchword import https, listeners
from watchword.config.settings import Settings
from watchword.ext_authz.core import ExtAuthzSettings
from watchword.extract import TransportSettings
from watchword.http_api import TOKEN_PATH
from watchword.identify.client_certificate import CertificateSettings, load_authorities
from watchword.issue.internal_token import InternalTokens
from watchword.issue.keyring import IssuingKeyring
from watchword.issue.tokens import TokenSettings
from watchword.outbound.network_guard import NetworkGuard
from watchword.pipeline import JwtSettings


def transport_settings(settings: Settings) -> TransportSettings:
    """T1-T7: where credentials are read from, and how long one may be."""
    return TransportSettings(
        max_token_bytes=settings.max_token_bytes,
        cookie_name=settings.auth_cookie_name,
        header_pair=(settings.connector_id_header, settings.connector_token_header),
        query_enabled=settings.query_credentials_enabled,
        client_certificates=settings.tls_client_ca_file is not None,
        xfcc_trusted=settings.xfcc_trusted,
        xfcc_trusted_by=settings.xfcc_trusted_by,
    )


def certificate_settings(settings: Settings) -> CertificateSettings | None:
    """C10: the CAs client certificates chain to and how their identities are read; None: off."""
    if settings.tls_client_ca_file is None:
        return None
    return CertificateSettings(
        authorities=load_authorities(settings.tls_client_ca_file),
        trust_domains=frozenset(settings.client_certificate_trust_domains),
        subject_names=settings.client_certificate_subject_names,
        trust_bare_identity=settings.client_certificate_trust_bare_identity,
    )


def jwt_settings(settings: Settings) -> JwtSettings:
    """C4, C7, C8, C9: what the JWT verifiers check beyond the signature."""
    return JwtSettings(
        settings.jwt_leeway_seconds,
        settings.token_issuer,
        settings.token_audience,
        settings.token_endpoint_url,
        settings.max_tenant_token_lifetime_seconds,
    )


def token_settings(settings: Settings) -> TokenSettings:
    """I1-I3: what issued tokens say and how long they live."""
    return TokenSettings(
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        default_lifetime=settings.token_lifetime_seconds,
        max_lifetime=settings.max_token_lifetime_seconds,
    )


def network_guard(settings: Settings) -> NetworkGuard:
    """O3/O4: which token URLs the outbound token client may reach."""
    hosts = (host.strip() for host in settings.outbound_allowed_token_hosts.split(","))
    return NetworkGuard(
        allow_private=settings.outbound_allow_private_token_urls,
        allowed_hosts=frozenset(host for host in hosts if host),
    )


def ext_authz_settings(settings: Settings, keyring: IssuingKeyring) -> ExtAuthzSettings:
    """E1: what an allowed request carries upstream (the credential removed, an internal token)."""
    internal_tokens = None
    if settings.ext_authz_internal_token_enabled:
        internal_tokens = InternalTokens(
            keyring,
            settings.token_issuer,
            settings.ext_authz_internal_token_audience,
            settings.ext_authz_internal_token_lifetime_seconds,
        )
    return ExtAuthzSettings(
        settings.ext_authz_remove_credential_headers, internal_tokens, settings.ext_authz_dry_run
    )


def grpc_address(settings: Settings) -> str:
    return f"{settings.host}:{settings.port}"


def client_ports(settings: Settings) -> int:
    """Ports clients hold connections on: gRPC, HTTP and, when on, the E4 ext_authz HTTP port."""
    return 2 if settings.ext_authz_http_port is None else 3


def connections_per_port(settings: Settings) -> int:
    """Idle or slow clients of one port must not use up the descriptors the others need."""
    return listeners.connection_bound(
        settings.max_connections, listeners.open_file_limit(), client_ports(settings)
    )


def grpc_server_options(settings: Settings, shared_port: bool) -> list[tuple[str, int]]:
    """The gRPC server's channel options: message sizes, connection bounds, and SO_REUSEPORT only when
    several worker processes share the port."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        *listeners.grpc_options(connections_per_port(settings)),
        *(listeners.GRPC_WORKER_OPTIONS if shared_port else listeners.GRPC_EXCLUSIVE_OPTIONS),
    ]


def public_base_url(settings: Settings, port: int) -> str:
    """Where clients reach the HTTP endpoints: `public_http_url`, else the address they listen on."""
    scheme = "https" if settings.http_tls else "http"
    return settings.public_http_url.rstrip("/") or f"{scheme}://{settings.http_host}:{port}"


def oauth_http_tls(settings: Settings) -> ssl.SSLContext | None:
    """The OAuth HTTP port's TLS (None: plaintext), asking for client certificates per
    http_tls_client_auth. ssl.SSLError or OSError when a file does not load."""
    if not settings.http_tls or settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return https.server_context(
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_client_ca_file,
        settings.http_tls_client_auth,
    )


def ext_authz_http_tls(settings: Settings) -> ssl.SSLContext | None:
    """E4's TLS (None: plaintext); with ext_authz_http_tls_client_ca_file, Envoy must prove itself."""
    if not settings.ext_authz_http_tls or settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    envoy_ca = settings.ext_authz_http_tls_client_ca_file
    client_auth: https.ClientAuth = "require" if envoy_ca is not None else "none"
    return https.server_context(settings.tls_cert_file, settings.tls_key_file, envoy_ca, client_auth)


def public_token_endpoint(settings: Settings, port: int) -> str:
    """The token endpoint's URL as the metadata publishes it (and C9 accepts as an assertion `aud`)."""
    return f"{public_base_url(settings, port)}{TOKEN_PATH}"


def audit_log_path(settings: Settings) -> Path | None:
    """The audit log's file; None: stdout."""
    return Path(settings.audit_log_file) if settings.audit_log_file else None
