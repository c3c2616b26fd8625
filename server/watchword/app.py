"""Assembling and running the server: store, keys, bootstrap, gRPC services, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import grpc
import uvicorn
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from watchword import listeners, secret_format
from watchword.api import ext_authz, reflection
from watchword.api.admin import AdminServicer
from watchword.api.auth import AuthServicer
from watchword.api.guard import AdminAuthInterceptor, GuardInterceptor
from watchword.api.overload import OverloadInterceptor
from watchword.caches import CacheRegistry
from watchword.config import Settings
from watchword.crypto.master_key import MasterKey
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind
from watchword.ext_authz.core import ExtAuthzCore, ExtAuthzSettings
from watchword.ext_authz.http import HttpFrontDoor
from watchword.extract import TransportSettings
from watchword.http_api import TOKEN_PATH, authorization_server_metadata, build_app
from watchword.identify.credential_state import is_usable
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.identify.jwks_source import JwksSourceError
from watchword.invalidation import InvalidationBus, for_replica, replica_caches
from watchword.issue.grants import Grants
from watchword.issue.internal_token import InternalTokens
from watchword.issue.keyring import IssuingKeyring, SigningKeyError
from watchword.issue.tokens import TokenSettings
from watchword.observe import metrics as observe_metrics
from watchword.observe.audit import AuditLog
from watchword.observe.decisions import Recorder
from watchword.observe.interceptor import ObserveInterceptor
from watchword.outbound.network_guard import NetworkGuard
from watchword.outbound.signer import OutboundSigner
from watchword.outbound.token_fetcher import TokenCache
from watchword.pipeline import JwtSettings, Pipeline
from watchword.routes import RouteError, RouteTable
from watchword.store import database, models
from watchword.store.repository import Store
from watchword.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc

log = logging.getLogger("watchword")

# How long the stop waits for clients to see what it did (a held refusal, a GOAWAY): loopback and LAN
# round trips are far shorter.
GOAWAY_SECONDS = 0.1

SERVICE_NAMES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    ext_authz.SERVICE_NAME,
)


def served_methods() -> frozenset[str]:
    """Every unary method the server serves, as gRPC names them ("/package.Service/Method")."""
    services = (
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
        admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
        external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
    )
    return frozenset(
        f"/{service.full_name}/{method.name}" for service in services for method in service.methods
    )


class StartupError(Exception):
    """Watchword cannot start; the message says what to fix."""


def load_master_key(settings: Settings) -> MasterKey:
    if settings.master_key:
        return MasterKey.from_text(settings.master_key, "WATCHWORD_MASTER_KEY")
    if settings.master_key_file is not None:
        return MasterKey.from_file(settings.master_key_file)
    # Development mode only (production without a key is refused by the settings' validation).
    path = settings.data_dir / "master.key"
    if path.exists():
        return MasterKey.from_file(path)
    log.warning("development mode: created a master key at %s; production needs its own", path)
    return MasterKey.create_file(path)


async def prepare_store(settings: Settings) -> Store:
    """Connect, and bring the schema up to date (embedded SQLite) or check that it is (PostgreSQL,
    where `watchword migrate` runs once per release, not once per replica)."""
    url = settings.effective_database_url
    if settings.uses_embedded_store:
        await database.migrate_async(url)
    else:
        current = await asyncio.to_thread(database.current_revision, url)
        if current != database.head_revision():
            raise StartupError(
                f"the database schema is at revision {current or 'none'}, this release needs "
                f"{database.head_revision()}: run `watchword migrate` with the same configuration first"
            )
    return bounded_store(url, settings.store_timeout_seconds)


def bounded_store(url: str, timeout: float) -> Store:
    """The store, every call of it bounded in time: a hung database is an outage, not a hang (#8)."""
    store = Store(database.create_engine(url, timeout))
    database.bound_calls(store, database.TimeBound(timeout, database.engine_probe(store.engine)))
    return store


async def bind_unbound_memberships(store: Store, issuers: Sequence[str], chosen: str = "") -> int:
    """Migration 0006 leaves memberships stored before issuers were recorded unbound: they grant nothing.
    They are bound to `chosen`, else to the only configured issuer (what such a row always meant). With
    several issuers and none chosen they stay unbound, and a warning says how to bind them (S1, S7)."""
    issuer = chosen or (issuers[0] if len(issuers) == 1 else "")
    if issuer:
        bound = await store.bind_unbound_memberships(issuer)
        if bound:
            log.info("%d memberships stored before issuers were recorded are now %r's", bound, issuer)
        return bound
    unbound = await store.count_unbound_memberships() if issuers else 0  # without issuers none is used
    if unbound:
        log.warning(
            "%d memberships were stored before issuers were recorded and grant nothing until bound to one: "
            "run `watchword migrate --bind-memberships-to ISSUER` with the same configuration",
            unbound,
        )
    return 0


async def bootstrap_admin_token(store: Store) -> str | None:
    """The first start mints an admin token and returns it (to be shown once); later starts return None."""
    if await store.count_credentials(int(CredentialKind.ADMIN_TOKEN)) > 0:
        return None
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(CredentialKind.ADMIN_TOKEN, credential_id)
    await store.add_credential(
        models.Credential(
            id=credential_id,
            kind=int(CredentialKind.ADMIN_TOKEN),
            name="bootstrap admin token",
            secret_hash=secret_format.hash_secret(secret),
            secret_hint=secret_format.hint(secret),
        )
    )
    return secret


def admin_token_checker(store: Store) -> AdminAuthInterceptor:
    async def check(token: str) -> str | None:
        parsed = secret_format.parse(token)
        if parsed is None or parsed.kind is not CredentialKind.ADMIN_TOKEN:
            return None
        record = await store.get_credential(parsed.credential_id)
        now = datetime.now(UTC)
        if (
            record is None
            or record.kind != int(CredentialKind.ADMIN_TOKEN)
            or not secret_format.secret_matches(token, record.secret_hash)
            or not is_usable(record, now)
        ):
            return None
        return record.id

    return AdminAuthInterceptor(check)


def public_base_url(settings: Settings, port: int) -> str:
    """Where clients reach the HTTP endpoints: `public_http_url`, else the address they listen on."""
    return settings.public_http_url.rstrip("/") or f"http://{settings.http_host}:{port}"


@dataclass
class HttpServer:
    """The OAuth HTTP endpoints, served by uvicorn on the same event loop as the gRPC server."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_http(
    settings: Settings,
    grants: Grants,
    keyring: IssuingKeyring,
    catalogue: Catalogue,
    recorder: Recorder | None = None,
    shared_port: bool = False,
) -> HttpServer:
    listener = listeners.tcp_listener(settings.http_host, settings.http_port, shared=shared_port)
    port = listener.getsockname()[1]
    base = public_base_url(settings, port)
    metadata = authorization_server_metadata(
        issuer=settings.token_issuer,
        token_endpoint=f"{base}{TOKEN_PATH}",
        jwks_uri=f"{base}/.well-known/jwks.json",
        scopes=sorted(catalogue.actions),
        signing_algorithm=settings.signing_algorithm,
    )
    app = build_app(grants, keyring.jwks, metadata, recorder)
    return await serve_uvicorn(app, listener, settings)


def http_ports(settings: Settings) -> int:
    """Ports clients hold connections on: gRPC, HTTP and, when on, the E4 ext_authz HTTP port."""
    return 2 if settings.ext_authz_http_port is None else 3


async def serve_uvicorn(
    app: object,
    listener: socket.socket,
    settings: Settings,
    protocol: type[asyncio.Protocol] = listeners.BoundedH11Protocol,
    **options: object,
) -> HttpServer:
    """uvicorn on this event loop, with the bounds of #8, serving `app` on `listener`."""
    port = listener.getsockname()[1]
    bound = listeners.connection_bound(
        settings.max_connections, listeners.open_file_limit(), http_ports(settings)
    )
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        lifespan="off",
        access_log=False,
        **listeners.uvicorn_options(bound, settings.idle_timeout_seconds, protocol),
        **options,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            await task  # raise the reason it stopped
            raise StartupError("the HTTP endpoints stopped during start")
        await asyncio.sleep(0.01)
    return HttpServer(server=server, task=task, port=port)


async def start_ext_authz_http(
    settings: Settings,
    core: ExtAuthzCore,
    overload: OverloadInterceptor,
    metrics: observe_metrics.Metrics,
    shared_port: bool = False,
) -> HttpServer:
    """E4: Envoy's HTTP ext_authz on its own port: httptools (the fast parser), no Server/Date headers
    (Envoy would pass them to the client), checks bounded together with the gRPC calls."""
    host, port = settings.ext_authz_http_host, settings.ext_authz_http_port or 0
    try:
        listener = listeners.tcp_listener(host, port, shared=shared_port)
    except OSError as exc:
        raise StartupError(f"cannot serve ext_authz HTTP on {host}:{port}: {exc.strerror or exc}") from None
    app = HttpFrontDoor(core, settings.ext_authz_http_path_prefix, overload, metrics)
    return await serve_uvicorn(
        app,
        listener,
        settings,
        listeners.EnvoyFacingProtocol,
        ws="none",
        server_header=False,
        date_header=False,
        # The peer is Envoy, as in gRPC mode: a forwarded-for header never rewrites the audited address.
        proxy_headers=False,
    )


def grpc_port(address: str, add: Callable[[], int]) -> int:
    """Bind the gRPC port; grpc says only "Failed to bind" (in use, or an address not on this host)."""
    try:
        return add()
    except RuntimeError:
        reason = "the port is in use or the address is not local"
        raise StartupError(f"cannot listen on {address}: {reason}") from None


def transport_settings(settings: Settings) -> TransportSettings:
    return TransportSettings(
        max_token_bytes=settings.max_token_bytes,
        cookie_name=settings.auth_cookie_name,
        header_pair=(settings.connector_id_header, settings.connector_token_header),
        query_enabled=settings.query_credentials_enabled,
    )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    store: Store
    health: health.aio.HealthServicer
    port: int
    settings: Settings
    external: ExternalJwtVerifier | None = None
    http: HttpServer | None = None
    ext_authz_http: HttpServer | None = None
    outbound_tokens: TokenCache | None = None
    invalidation: InvalidationBus | None = None
    overload: OverloadInterceptor | None = None
    metrics: observe_metrics.Metrics | None = None
    metrics_server: observe_metrics.MetricsServer | None = None
    audit: AuditLog | None = None

    async def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish within the grace period, then close the store."""
        await self.health.enter_graceful_shutdown()
        grace_ends = time.monotonic() + self.settings.shutdown_grace_seconds
        if self.overload is not None:
            # New calls get a clean UNAVAILABLE with a reason while the admitted ones finish (#8).
            self.overload.drain()
            await self.overload.wait_idle(self.settings.shutdown_grace_seconds)
        # Last started, first stopped: each uvicorn server restores the signal handlers it found.
        if self.ext_authz_http is not None:
            await self.ext_authz_http.stop()
        if self.http is not None:
            await self.http.stop()
        await self._stop_grpc(grace_ends)
        if self.external is not None:
            await self.external.close()
        if self.outbound_tokens is not None:
            await self.outbound_tokens.close()
        if self.invalidation is not None:
            await self.invalidation.stop()
        await _stop_observing(self.metrics_server, self.audit)
        await self.store.close()

    async def _stop_grpc(self, grace_ends: float) -> None:
        """Stop the gRPC server so that every call it refuses sees UNAVAILABLE, never CANCELLED: refusals
        are held while the server tells each connection to go away (GOAWAY), then answered."""
        if self.overload is None:
            await self.server.stop(max(grace_ends - time.monotonic(), 0.1))
            return
        self.overload.hold_refusals()
        await asyncio.sleep(GOAWAY_SECONDS)  # each busy client's next call is now held, not in flight
        stopping = asyncio.create_task(self.server.stop(max(grace_ends - time.monotonic(), 0.1)))
        await asyncio.sleep(GOAWAY_SECONDS)  # every client has read the GOAWAY: no new call comes here
        self.overload.release_refusals()
        await stopping


def ensure_data_dir(settings: Settings) -> None:
    """The data directory holds the embedded store and the development master key: owner only."""
    needed = settings.uses_embedded_store or (not settings.master_key and settings.master_key_file is None)
    if needed and not settings.data_dir.exists():
        settings.data_dir.mkdir(mode=0o700, parents=True)


def route_table(settings: Settings, catalogue: Catalogue) -> RouteTable:
    """E1: the configured routes, checked against the catalogue."""
    try:
        return RouteTable.build(settings.routes, catalogue)
    except RouteError as exc:
        raise StartupError(f"invalid route table: {exc}") from None


def add_ext_authz(
    server: grpc.aio.Server,
    settings: Settings,
    pipeline: Pipeline,
    keyring: IssuingKeyring,
    routes: RouteTable,
    recorder: Recorder,
) -> ExtAuthzCore:
    """E1: Envoy's ext_authz Check on the same server; the decision core is shared with E4's HTTP door."""
    internal_tokens = None
    if settings.ext_authz_internal_token_enabled:
        internal_tokens = InternalTokens(
            keyring,
            settings.token_issuer,
            settings.ext_authz_internal_token_audience,
            settings.ext_authz_internal_token_lifetime_seconds,
        )
    options = ExtAuthzSettings(settings.ext_authz_remove_credential_headers, internal_tokens)
    core = ExtAuthzCore(pipeline, routes, transport_settings(settings), options, recorder)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(ext_authz.ExtAuthzServicer(core), server)
    return core


def start_audit(settings: Settings, out: TextIO) -> AuditLog | None:
    if not settings.audit_enabled:
        return None
    path = Path(settings.audit_log_file) if settings.audit_log_file else None
    audit = AuditLog(path, stream=out)
    try:
        audit.start()
    except OSError as exc:
        raise StartupError(f"cannot open audit_log_file {str(path)!r}: {exc.strerror or exc}") from None
    return audit


def watch(
    metrics: observe_metrics.Metrics,
    caches: CacheRegistry,
    outbound_tokens: TokenCache,
    external: ExternalJwtVerifier | None,
    audit: AuditLog | None,
) -> None:
    """Point the metrics at the counts the caches, the JWKS sources and the token cache keep."""
    for name, cache in caches.counted():
        metrics.watch_cache(name, cache)
    metrics.watch_token_fetches(outbound_tokens.stats)
    if external is not None:
        metrics.watch_jwks(lambda: {issuer: source.stats for issuer, source in external.sources.items()})
    if audit is not None:
        metrics.watch_audit(audit)


async def _stop_observing(
    metrics_server: observe_metrics.MetricsServer | None, audit: AuditLog | None
) -> None:
    if metrics_server is not None:
        await asyncio.to_thread(metrics_server.stop)
    if audit is not None:
        await asyncio.to_thread(audit.close)  # after the last RPC: every record is written


@dataclass
class Prepared:
    """What a worker serves from: the catalogue, the routes, the master key, the store and the signing key
    ring. `admin_token` is the bootstrap admin token when this start minted it (to be shown once)."""

    catalogue: Catalogue
    routes: RouteTable
    master_key: MasterKey
    store: Store
    keyring: IssuingKeyring
    admin_token: str | None = None


async def load_keyring(store: Store, master_key: MasterKey, settings: Settings) -> IssuingKeyring:
    """The signing key ring, with its active key (created on the very first start)."""
    keyring = IssuingKeyring.from_settings(store, master_key, settings)
    try:
        await keyring.load()
    except SigningKeyError as exc:
        raise StartupError(f"cannot use the stored signing key: {exc}") from None
    return keyring


async def prepare(settings: Settings) -> Prepared:
    """What a replica does once, before any worker serves: the data directory, the master key, the
    schema, the signing key, unbound memberships and the bootstrap admin token."""
    catalogue = Catalogue.load(settings.catalogue_file)
    routes = route_table(settings, catalogue)
    ensure_data_dir(settings)
    master_key = load_master_key(settings)
    store = await prepare_store(settings)
    try:
        keyring = await load_keyring(store, master_key, settings)
        await bind_unbound_memberships(store, [entry.issuer for entry in settings.issuers])
        admin_token = await bootstrap_admin_token(store)
    except BaseException:
        await store.close()
        raise
    return Prepared(catalogue, routes, master_key, store, keyring, admin_token)


async def attach(settings: Settings) -> Prepared:
    """What a worker process loads for itself once the supervisor has prepared the replica: no
    migration, no bootstrap, no key creation (the supervisor did them)."""
    catalogue = Catalogue.load(settings.catalogue_file)
    routes = route_table(settings, catalogue)
    master_key = load_master_key(settings)
    store = bounded_store(settings.effective_database_url, settings.store_timeout_seconds)
    try:
        keyring = await load_keyring(store, master_key, settings)
    except BaseException:
        await store.close()
        raise
    return Prepared(catalogue, routes, master_key, store, keyring)


async def start(settings: Settings, out: TextIO = sys.stdout) -> RunningServer:
    """One process serving everything (workers = 1): prepare, start, say where it listens."""
    prepared = await prepare(settings)
    running = await start_worker(settings, prepared, out)
    announce(settings, Listening.of(running), out, prepared.admin_token)
    return running


@dataclass(frozen=True)
class Listening:
    """Where a started replica listens (None: that listener is off)."""

    port: int
    http_port: int | None = None
    metrics_port: int | None = None
    ext_authz_http_port: int | None = None

    @classmethod
    def of(cls, running: RunningServer) -> Listening:
        http = running.http.port if running.http is not None else None
        metrics = running.metrics_server.port if running.metrics_server is not None else None
        ext_authz_http = running.ext_authz_http.port if running.ext_authz_http is not None else None
        return cls(running.port, http, metrics, ext_authz_http)


def show_admin_token(admin_token: str, out: TextIO) -> None:
    # Shown once, on stdout (never in the logs): the only way to reach the admin service at first.
    print(
        "Watchword created its first admin token. It is shown once; store it now:\n"
        f"  WATCHWORD_ADMIN_TOKEN={admin_token}",
        file=out,
        flush=True,
    )


def announce(settings: Settings, listening: Listening, out: TextIO, admin_token: str | None) -> None:
    """The start's lines on stdout: the bootstrap admin token once, then where each listener is."""
    if admin_token is not None:
        show_admin_token(admin_token, out)
    scheme = "tls" if settings.tls_cert_file else "plaintext"
    if listening.http_port is not None:
        print(f"watchword http listening on {settings.http_host}:{listening.http_port}", file=out, flush=True)
    if listening.ext_authz_http_port is not None:
        where = f"{settings.ext_authz_http_host}:{listening.ext_authz_http_port}"
        print(f"watchword ext_authz http listening on {where}", file=out, flush=True)
    if listening.metrics_port is not None:
        print(
            f"watchword metrics listening on {settings.metrics_host}:{listening.metrics_port}",
            file=out,
            flush=True,
        )
    # Last: tools and tests wait for this line to know that everything is up.
    print(f"watchword listening on {settings.host}:{listening.port} ({scheme})", file=out, flush=True)


async def start_worker(
    settings: Settings, prepared: Prepared, out: TextIO = sys.stdout, shared_ports: bool = False
) -> RunningServer:
    """Start serving from a prepared replica: caches, change feed, gRPC server, HTTP endpoints, metrics.
    `shared_ports`: one of several worker processes on the same ports (SO_REUSEPORT)."""
    catalogue, routes, master_key = prepared.catalogue, prepared.routes, prepared.master_key
    store, keyring = prepared.store, prepared.keyring
    external: ExternalJwtVerifier | None = None
    bus: InvalidationBus | None = None
    metrics = observe_metrics.Metrics()
    metrics_server: observe_metrics.MetricsServer | None = None
    audit: AuditLog | None = None
    try:
        audit = start_audit(settings, out)
        recorder = Recorder(metrics, audit)
        if settings.issuers:
            external = ExternalJwtVerifier(settings.issuers, max_token_bytes=settings.max_token_bytes)
            try:
                await external.start()
            except JwksSourceError as exc:
                raise StartupError(str(exc)) from None
        admin_interceptor = admin_token_checker(store)
        # Observing first, so every answer is timed and audited with its request id; then the bound: an
        # excess call is refused before anything else is done for it (#8).
        overload = OverloadInterceptor(settings.max_concurrent_rpcs)
        # Idle or slow clients of one port must not use up the descriptors the others need (#8).
        per_port = listeners.connection_bound(
            settings.max_connections, listeners.open_file_limit(), http_ports(settings)
        )
        server = grpc.aio.server(
            interceptors=[
                ObserveInterceptor(metrics, audit, served_methods()),
                overload,
                admin_interceptor,
                GuardInterceptor(),
            ],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                *listeners.grpc_options(per_port),
                *(listeners.GRPC_WORKER_OPTIONS if shared_ports else listeners.GRPC_EXCLUSIVE_OPTIONS),
            ],
        )
        jwt = JwtSettings(
            settings.jwt_leeway_seconds,
            settings.token_issuer,
            settings.token_audience,
            settings.token_endpoint_url,
            settings.max_tenant_token_lifetime_seconds,
        )
        pipeline = Pipeline(
            store,
            catalogue,
            transport_settings(settings),
            master_key,
            jwt,
            external,
            cache_ttl=settings.cache_ttl_seconds,
            cache_max_entries=settings.cache_max_entries,
        )
        pipeline.signing_keys.local = keyring.active
        token_settings = TokenSettings(
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            default_lifetime=settings.token_lifetime_seconds,
            max_lifetime=settings.max_token_lifetime_seconds,
        )
        grants = Grants(pipeline, keyring, token_settings)
        guard = NetworkGuard(
            allow_private=settings.outbound_allow_private_token_urls,
            allowed_hosts=frozenset(
                h.strip() for h in settings.outbound_allowed_token_hosts.split(",") if h.strip()
            ),
        )
        outbound_tokens = TokenCache(guard=guard)
        signer = OutboundSigner(store, master_key, outbound_tokens, settings.cache_ttl_seconds)
        caches = replica_caches(pipeline, signer, keyring)
        # Store outages (#8): known credentials keep answering from cache for a bounded time.
        caches.serve_stale_during_outage(settings.store_outage_grace_seconds)
        bus = for_replica(store, caches, settings.effective_database_url)
        await bus.start()
        bus.delay_observers.append(lambda _change, seconds: metrics.revocation_delay.observe(seconds))
        watch(metrics, caches, outbound_tokens, external, audit)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(
                pipeline,
                settings.max_token_bytes,
                settings.max_request_headers,
                settings.max_batch_entries,
                grants,
                signer,
                admin_interceptor.check,
                recorder,
                max_batch_credentials=settings.max_batch_credentials,
            ),
            server,
        )
        admin = AdminServicer(
            store,
            catalogue,
            master_key,
            revocation_lifetime=settings.max_token_lifetime_seconds,
            keyring=keyring,
            issuers=settings.issuers,
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)
        ext_authz_core = add_ext_authz(server, settings, pipeline, keyring, routes, recorder)
        reflection.enable(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
        )
        address = f"{settings.host}:{settings.port}"
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            credentials = grpc.ssl_server_credentials(
                [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
            )
            port = grpc_port(address, lambda: server.add_secure_port(address, credentials))
        else:
            port = grpc_port(address, lambda: server.add_insecure_port(address))
        # Before the gRPC server starts: a port in use stops the start before anything is served.
        if settings.metrics_enabled:
            try:
                metrics_server = observe_metrics.serve(
                    metrics, settings.metrics_host, settings.metrics_port, settings.idle_timeout_seconds
                )
            except OSError as exc:
                where = f"{settings.metrics_host}:{settings.metrics_port}"
                raise StartupError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from None
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        await set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)  # until started
        await server.start()
        http = (
            await start_http(settings, grants, keyring, catalogue, recorder, shared_ports)
            if settings.http_enabled
            else None
        )
        ext_authz_http = None
        if settings.ext_authz_http_port is not None:
            try:
                ext_authz_http = await start_ext_authz_http(
                    settings, ext_authz_core, overload, metrics, shared_ports
                )
            except BaseException:
                if http is not None:
                    await http.stop()
                raise
        # C9: the token endpoint's URL as the metadata publishes it is an assertion `aud` too, so a
        # client configured from the metadata works out of the box.
        public = public_base_url(settings, http.port if http is not None else settings.http_port)
        pipeline.clients.accept_audience(f"{public}{TOKEN_PATH}")
    except BaseException:
        if external is not None:
            await external.close()
        if bus is not None:
            await bus.stop()
        await _stop_observing(metrics_server, audit)
        await store.close()
        raise
    await set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(
        server=server,
        store=store,
        health=health_servicer,
        port=port,
        settings=settings,
        external=external,
        http=http,
        ext_authz_http=ext_authz_http,
        outbound_tokens=outbound_tokens,
        invalidation=bus,
        overload=overload,
        metrics=metrics,
        metrics_server=metrics_server,
        audit=audit,
    )


async def set_health(servicer: health.aio.HealthServicer, status: int) -> None:
    for name in ("", *SERVICE_NAMES):
        await servicer.set(name, status)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain gracefully."""
    log.info("open-file limit: %s", listeners.raise_open_file_limit())
    running = await start(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stopping.wait()
    log.info("shutting down: draining in-flight calls for up to %ss", settings.shutdown_grace_seconds)
    await running.stop()
