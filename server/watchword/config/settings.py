"""Every setting, its default, its bounds and the combinations refused at start (`Settings`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watchword import https
from watchword.identify.issuer_settings import IssuerList
from watchword.routes import RouteList
from watchword.store.database import DatabaseUrlError, normalise_url

# More worker processes than this is a typo, not a machine (each one is a whole server with its own caches).
MAX_WORKERS = 256


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0))


def worker_count(workers: int) -> int:
    """How many worker processes `workers` means: 0 is one per usable core."""
    return workers or usable_cores()


def is_https_issuer(issuer: str) -> bool:
    """RFC 8414 §2: an https URL with a host and no query or fragment."""
    try:
        parts = urlsplit(issuer)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and not parts.query and not parts.fragment


class Settings(BaseModel):
    """Every setting, with its default. Field docs are the README's reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="Address the gRPC server listens on.")
    port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0: pick a free one).")
    tls_cert_file: Path | None = Field(default=None, description="PEM certificate chain; enables TLS.")
    tls_key_file: Path | None = Field(default=None, description="PEM private key for `tls_cert_file`.")
    # C10: client certificates (workload identity).
    tls_client_ca_file: Path | None = Field(
        default=None,
        description="C10: PEM bundle of the CAs client certificates must chain to (Watchword's own mutual "
        "TLS, Envoy's peer certificate, XFCC); enables client-certificate credentials.",
    )
    tls_client_auth: Literal["none", "require"] = Field(
        default="none",
        description="C10: `require`: the gRPC port asks every client for a certificate chaining to "
        "tls_client_ca_file and refuses the handshake without one (needs tls_cert_file).",
    )
    client_certificate_trust_domains: tuple[str, ...] = Field(
        default=(),
        description="C10: SPIFFE trust domains whose ids are accepted (comma-separated in the "
        "environment); empty: any the CAs vouch for.",
    )
    client_certificate_subject_names: bool = Field(
        default=False,
        description="C10: a certificate without a SPIFFE id is known by its subject name (RFC 4514).",
    )
    client_certificate_trust_bare_identity: bool = Field(
        default=False,
        description="C10: accept a proxy's word for the client's identity without its certificate "
        "(Envoy's source.principal, an XFCC URI or Subject): only the proxy vouches for it.",
    )
    xfcc_trusted: bool = Field(
        default=False,
        description="C10: read x-forwarded-client-cert, because the proxy in front sets it and drops any "
        "client-sent one (Envoy: forward_client_cert_details SANITIZE_SET); off: the header is ignored.",
    )
    xfcc_trusted_by: tuple[str, ...] = Field(
        default=(),
        description="C10: the URI SANs of the proxies whose XFCC element counts (its By=); empty: the last "
        "element, whoever added it.",
    )
    data_dir: Path = Field(default=Path("watchword-data"), description="Where the embedded store lives.")
    database_url: str = Field(
        default="", description="sqlite:///PATH or postgresql://USER@HOST:PORT/DB; empty: SQLite in data_dir."
    )
    mode: Literal["development", "production"] = Field(
        default="development",
        description="development creates a master key in data_dir when none is given; production "
        "refuses to start without one.",
    )
    master_key_file: Path | None = Field(default=None, description="File holding the 32-byte master key.")
    master_key: str = Field(
        default="", repr=False, description="The master key itself (base64url), e.g. from a secret store."
    )
    catalogue_file: Path | None = Field(
        default=None, description="Action catalogue TOML; empty: the shipped one."
    )
    shutdown_grace_seconds: float = Field(default=10.0, gt=0, le=300, description="SIGTERM drain time.")
    max_batch_entries: int = Field(default=1000, ge=1, le=10000, description="AuthorizeBatch bound (T7).")
    max_batch_credentials: int = Field(
        default=100, ge=1, le=10000, description="Most distinct credentials in one AuthorizeBatch (T7)."
    )
    max_token_bytes: int = Field(default=8192, ge=256, le=65536, description="Longest credential read.")
    max_request_headers: int = Field(
        default=256, ge=8, le=4096, description="Most headers in one HttpRequest."
    )
    max_message_bytes: int = Field(
        default=4 * 1024 * 1024, ge=65536, le=64 * 1024 * 1024, description="Largest gRPC message."
    )
    auth_cookie_name: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{0,128}$",
        description="T3: cookie read for tokens; empty: off.",
    )
    connector_id_header: str = Field(
        default="Hull-App-Id",
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$",
        description="T4: header with the connector id.",
    )
    connector_token_header: str = Field(
        default="Hull-Access-Token",
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$",
        description="T4: header with the connector secret or a subject JWT.",
    )
    query_credentials_enabled: bool = Field(
        default=False, description="T5: read `id` and `secret` query parameters (flagged as discouraged)."
    )
    jwt_leeway_seconds: float = Field(
        default=30.0,
        ge=0,
        le=120,
        description="Clock leeway for exp, nbf and iat of tenant, subject and own JWTs.",
    )
    token_issuer: str = Field(
        default="urn:watchword",
        min_length=1,
        max_length=255,
        description="`iss` of Watchword's own tokens (C8).",
    )
    allow_non_https_issuer: bool = Field(
        default=False,
        description="Let production mode run with a token_issuer that is not an https URL (RFC 8414 §2 "
        "wants one); development mode always may.",
    )
    token_audience: str = Field(
        default="urn:watchword:api",
        min_length=1,
        max_length=255,
        description="`aud` of Watchword's own tokens.",
    )
    token_endpoint_url: str = Field(
        default="urn:watchword:token",
        min_length=1,
        max_length=2048,
        description="The token endpoint's URL: the `aud` OAuth client assertions must name (C9).",
    )
    signing_algorithm: Literal["ES256", "EdDSA", "RS256"] = Field(
        default="ES256", description="I5: algorithm of new signing keys (first key and rotations)."
    )
    token_lifetime_seconds: int = Field(
        default=3600, ge=60, le=86400, description="I1-I3: default lifetime of issued tokens."
    )
    max_token_lifetime_seconds: int = Field(
        default=86400,
        ge=60,
        le=604800,
        description="Longest lifetime an issued token may have; a superseded signing key verifies "
        "this long after a rotation.",
    )
    max_tenant_token_lifetime_seconds: int = Field(
        default=86400,
        ge=60,
        le=604800,
        description="C4/C7: longest lifetime (exp - iat, and exp - now) a tenant- or connector-signed "
        "token may claim.",
    )
    issuers: IssuerList = Field(
        default=(), description="C1: trusted external OIDC issuers ([[issuers]] tables in the file)."
    )
    http_enabled: bool = Field(
        default=True, description="Serve the OAuth HTTP endpoints (token, JWKS, metadata)."
    )
    http_host: str = Field(default="127.0.0.1", description="Address the OAuth HTTP endpoints listen on.")
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of the OAuth HTTP endpoints (0: any free one)."
    )
    public_http_url: str = Field(
        default="",
        max_length=2048,
        description="The HTTP endpoints' public base URL for the RFC 8414 metadata; empty: http://http_host:http_port.",
    )
    # HTTPS on the OAuth HTTP port (C10 over Watchword's own TLS): a switch of its own, so that turning
    # TLS on for gRPC does not change the scheme a TLS-terminating proxy in front of this port speaks.
    http_tls: bool = Field(
        default=False,
        description="Serve the OAuth HTTP endpoints over TLS (HTTPS, TLS 1.2+) with tls_cert_file and "
        "tls_key_file (needs them).",
    )
    http_tls_client_auth: Literal["none", "optional", "require"] = Field(
        default="none",
        description="C10 on the OAuth HTTP port (needs http_tls and tls_client_ca_file): `optional` asks "
        "for a client certificate chaining to tls_client_ca_file and goes on without one (clients may "
        "still use secrets); `require` refuses the handshake without one.",
    )
    outbound_allow_private_token_urls: bool = Field(
        default=False,
        description="O3/O4: let token URLs resolve to loopback, private or link-local addresses (tests).",
    )
    outbound_allowed_token_hosts: str = Field(
        default="",
        max_length=4096,
        description="O3/O4: comma-separated token hosts allowed whatever they resolve to.",
    )
    # Overload and faults
    max_concurrent_rpcs: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Calls worked on at once; past it RESOURCE_EXHAUSTED (`overloaded`) at once. Health "
        "checks are exempt.",
    )
    store_outage_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        le=300,
        description="While the store is unreachable, known credentials loaded this recently are still "
        "served from cache; 0: never.",
    )
    store_timeout_seconds: float = Field(
        default=2.0,
        ge=0.1,
        le=60,
        description="Longest wait for one store call (connecting, a free pooled connection, the query); "
        "past it the store counts as down (the outage grace applies, then UNAVAILABLE).",
    )
    max_connections: int = Field(
        default=1000,
        ge=16,
        le=100_000,
        description="Connections the gRPC port and the HTTP port each keep open at most; past it a new "
        "connection is closed at once.",
    )
    idle_timeout_seconds: float = Field(
        default=10.0,
        ge=1,
        le=600,
        description="The HTTP and metrics ports close a connection that has not sent a whole request "
        "header this long after connecting, or sends nothing this long between requests.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    # Several replicas: how stale a cached credential may get when a change event is missed.
    cache_ttl_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Longest time a replica serves a cached credential, application, membership, revocation "
        "or outbound credential without re-reading it; changes arrive sooner through the change feed.",
    )
    # Memory: every cache is bounded by entries; this sizes the per-credential ones (README, Performance).
    cache_max_entries: int = Field(
        default=10_000,
        ge=100,
        le=1_000_000,
        description="Entries each per-credential cache keeps (credentials, applications, memberships, "
        "revocations, verified secrets and tokens), least recently used dropped first.",
    )
    # E1: Envoy ext_authz (envoy.service.auth.v3.Authorization/Check).
    routes: RouteList = Field(
        default=(),
        description="E1: the route table, [[routes]] tables in the file: (method, path) -> action.",
    )
    ext_authz_remove_credential_headers: bool = Field(
        default=False,
        description="E1: on allow, remove the credential (Authorization, the connector header pair, the auth "
        "cookie, the T5 query parameters) from the request Envoy forwards upstream.",
    )
    ext_authz_internal_token_enabled: bool = Field(
        default=False,
        description="E1: on allow, give the upstream a short-lived JWT for the principal in "
        "x-watchword-internal-token.",
    )
    ext_authz_internal_token_audience: str = Field(
        default="urn:watchword:internal",
        min_length=1,
        max_length=255,
        description="E1: `aud` of the internal token; must differ from token_audience.",
    )
    ext_authz_internal_token_lifetime_seconds: int = Field(
        default=60, ge=10, le=3600, description="E1: lifetime of the internal token."
    )
    ext_authz_dry_run: bool = Field(
        default=False,
        description="E1/E4: dry-run for every route: decide, audit and count as usual, then allow, with the "
        "would-be answer in x-watchword-would-be-* headers (faults, overload and the refusals listed in the "
        "Envoy guide still refuse).",
    )
    # E4: the HTTP ext_authz front door (Envoy's `http_service`), beside the gRPC Check.
    ext_authz_http_host: str = Field(
        default="127.0.0.1", description="E4: address the HTTP ext_authz front door listens on."
    )
    ext_authz_http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="E4: port of the HTTP ext_authz front door (0: pick a free one); off unless set.",
    )
    ext_authz_http_path_prefix: str = Field(
        default="",
        max_length=255,
        pattern=r"^(/[A-Za-z0-9._~-]+)*$",
        description="E4: the `path_prefix` Envoy's http_service adds to every checked path; a request "
        "without it is denied (`path_prefix_missing`). Empty: none.",
    )
    ext_authz_http_tls: bool = Field(
        default=False,
        description="E4: serve the HTTP ext_authz door over TLS (TLS 1.2+) with tls_cert_file and "
        "tls_key_file (needs them); Envoy's http_service cluster then needs an UpstreamTlsContext.",
    )
    ext_authz_http_tls_client_ca_file: Path | None = Field(
        default=None,
        description="E4: PEM bundle of the CAs Envoy's client certificate must chain to; set, the door "
        "refuses a TLS handshake without one (mutual TLS on the Envoy hop; needs ext_authz_http_tls).",
    )
    # ---- metrics, audit log and structured logs ----
    metrics_enabled: bool = Field(
        default=True, description="Serve Prometheus metrics at /metrics on metrics_host:metrics_port."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address the metrics endpoint listens on.")
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Port of the metrics endpoint (0: any free one)."
    )
    audit_enabled: bool = Field(
        default=True, description="Write an audit record for every decision and every admin call."
    )
    audit_log_file: str = Field(
        default="",
        max_length=4096,
        description="File the audit log's JSON lines are appended to (created owner-only); empty: stdout.",
    )
    # ---- key hygiene: credential usage and leaked-key reports (`watchword.hygiene`) ----
    usage_tracking_enabled: bool = Field(
        default=True,
        description="Count each inbound credential's uses per UTC day and its last use, in memory, and "
        "write them to the store in batches.",
    )
    usage_flush_seconds: float = Field(
        default=30.0,
        ge=0.05,
        le=3600,
        description="How often each process adds its counted uses to the store (one transaction).",
    )
    usage_retention_days: int = Field(
        default=90, ge=30, le=3660, description="Days of per-day use counts kept in the store."
    )
    usage_max_pending: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="Credentials (and credential-days) counted in memory between two successful "
        "writes; beyond it uses are dropped and counted in a metric.",
    )
    secret_scanning_public_keys_file: Path | None = Field(
        default=None,
        description="A secret scanner's signing keys, as GitHub publishes them (a `public_keys` list "
        "of `key_identifier`, `key`, `is_current`); enables the leaked-key report endpoint on the OAuth "
        "HTTP port.",
    )
    secret_scanning_public_keys_url: str = Field(
        default="",
        max_length=2048,
        pattern=r"^(https?://\S+)?$",
        description="Where to fetch the scanner's key document instead (e.g. GitHub's "
        "`https://api.github.com/meta/public_keys/secret_scanning`): at start, and again when a report "
        "names a key it lacks (at most once a minute).",
    )
    leaked_credential_action: Literal["deactivate", "flag"] = Field(
        default="deactivate",
        description="What a verified leak report does to the credential: deactivate it, or only "
        "flag it (`leak_reported_at`).",
    )
    # Worker processes: one Python process uses one core.
    workers: int = Field(
        default=1,
        ge=0,
        le=MAX_WORKERS,
        description="Processes serving the same ports (SO_REUSEPORT) with a supervisor; 1: one process, no "
        "supervisor; 0: one per usable core.",
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="Log lines as JSON objects or text (on stderr); auto: json in production mode, "
        "text in development mode.",
    )

    @model_validator(mode="after")
    def _one_source_of_scanner_keys(self) -> Settings:
        if self.secret_scanning_public_keys_file is not None and self.secret_scanning_public_keys_url:
            raise ValueError(
                "set secret_scanning_public_keys_file or secret_scanning_public_keys_url, not both"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url_is_usable(cls, value: str) -> str:
        if value:
            try:
                normalise_url(value)
            except DatabaseUrlError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _tls_files_come_in_pairs(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "tls_cert_file and tls_key_file must be set together (or neither, for plaintext)"
            )
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {str(path)!r} does not exist or is not a file")
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            problem = https.key_pair_problem(self.tls_cert_file, self.tls_key_file)
            if problem is not None:
                raise ValueError(f"tls_cert_file and tls_key_file: {problem}")
        if self.master_key_file is not None and self.master_key:
            raise ValueError("set master_key_file or master_key, not both")
        if any(issuer.issuer == self.token_issuer for issuer in self.issuers):
            raise ValueError(
                "an external issuer cannot use token_issuer, the `iss` of Watchword's own tokens"
            )
        if self.mode == "production" and self.master_key_file is None and not self.master_key:
            raise ValueError(
                "production mode needs a master key: set master_key_file (or WATCHWORD_MASTER_KEY_FILE) "
                "to a file holding one; `watchword generate-master-key` makes one"
            )
        return self

    @field_validator("client_certificate_trust_domains", "xfcc_trusted_by", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # From the environment a list is one string: comma-separated.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("client_certificate_trust_domains")
    @classmethod
    def _trust_domains_are_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if re.fullmatch(r"[a-z0-9._-]{1,255}", domain) is None:
                raise ValueError(f"{domain!r} is no SPIFFE trust domain (lowercase, no scheme or port)")
        return value

    @model_validator(mode="after")
    def _client_certificates_have_their_ca(self) -> Settings:
        if self.tls_client_ca_file is not None and not self.tls_client_ca_file.is_file():
            raise ValueError(f"tls_client_ca_file {str(self.tls_client_ca_file)!r} is not a file")
        uses = (
            self.tls_client_auth == "require",
            bool(self.client_certificate_trust_domains),
            self.client_certificate_subject_names,
            self.client_certificate_trust_bare_identity,
            self.xfcc_trusted,
        )
        if any(uses) and self.tls_client_ca_file is None:
            raise ValueError("client certificates (C10) need tls_client_ca_file, the CAs they chain to")
        if self.tls_client_auth == "require" and self.tls_cert_file is None:
            raise ValueError('tls_client_auth = "require" needs TLS: set tls_cert_file and tls_key_file')
        return self

    @model_validator(mode="after")
    def _https_listeners_have_their_files(self) -> Settings:
        if (self.http_tls or self.ext_authz_http_tls) and self.tls_cert_file is None:
            raise ValueError("http_tls and ext_authz_http_tls need tls_cert_file and tls_key_file")
        if self.http_tls_client_auth != "none" and not (self.http_tls and self.tls_client_ca_file):
            raise ValueError("http_tls_client_auth needs http_tls = true and tls_client_ca_file")
        envoy_ca = self.ext_authz_http_tls_client_ca_file
        if envoy_ca is not None and not (self.ext_authz_http_tls and envoy_ca.is_file()):
            raise ValueError(
                f"ext_authz_http_tls_client_ca_file {str(envoy_ca)!r} needs ext_authz_http_tls = true "
                "and must be a file"
            )
        return self

    @model_validator(mode="after")
    def _production_issuer_is_https(self) -> Settings:
        # RFC 8414 §2: the issuer identifier is an https URL without query or fragment; clients that
        # validate the metadata (authlib, Spring, ...) refuse anything else.
        if (
            self.mode == "production"
            and not self.allow_non_https_issuer
            and not is_https_issuer(self.token_issuer)
        ):
            raise ValueError(
                "production mode needs token_issuer to be an https URL without query or fragment (RFC 8414), "
                f"not {self.token_issuer!r}: set it to Watchword's public URL, e.g. "
                "https://auth.example.com, or set allow_non_https_issuer = true"
            )
        return self

    @model_validator(mode="after")
    def _metrics_port_is_its_own(self) -> Settings:
        if self.metrics_enabled and self.metrics_port and self.metrics_port in (self.port, self.http_port):
            raise ValueError(f"metrics_port ({self.metrics_port}) must differ from port and http_port")
        return self

    @model_validator(mode="after")
    def _ext_authz_http_port_is_its_own(self) -> Settings:
        port = self.ext_authz_http_port
        others = (self.port, self.http_port, self.metrics_port if self.metrics_enabled else 0)
        if port and port in others:
            raise ValueError(
                f"ext_authz_http_port ({port}) must differ from port, http_port and metrics_port"
            )
        return self

    @property
    def effective_log_format(self) -> Literal["json", "text"]:
        if self.log_format == "auto":
            return "json" if self.mode == "production" else "text"
        return self.log_format

    @model_validator(mode="after")
    def _token_lifetime_within_bound(self) -> Settings:
        if self.token_lifetime_seconds > self.max_token_lifetime_seconds:
            raise ValueError(
                f"token_lifetime_seconds ({self.token_lifetime_seconds}) must not exceed "
                f"max_token_lifetime_seconds ({self.max_token_lifetime_seconds})"
            )
        return self

    @model_validator(mode="after")
    def _internal_token_is_not_a_credential(self) -> Settings:
        # E1: with the same audience, the upstream's token would be accepted by Watchword as a C8 credential.
        if self.ext_authz_internal_token_audience == self.token_audience:
            raise ValueError(
                "ext_authz_internal_token_audience must differ from token_audience, or the internal token "
                "would be accepted as a Watchword token (C8)"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'watchword.db').absolute()}"

    @property
    def uses_embedded_store(self) -> bool:
        return not self.database_url
