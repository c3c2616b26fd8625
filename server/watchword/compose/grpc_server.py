"""The gRPC server's builder: its interceptors, its services, health, its port, and the graceful drain
and stop that SIGTERM unwinds (E3)."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from watchword import secret_format
from watchword.api import ext_authz, reflection
from watchword.api.admin import AdminServicer
from watchword.api.auth import AuthServicer
from watchword.api.guard import AdminAuthInterceptor, GuardInterceptor
from watchword.api.overload import OverloadInterceptor
from watchword.compose.deciding import Answering
from watchword.compose.failures import StartupError, on_close
from watchword.compose.observing import Observing
from watchword.compose.replica import Prepared
from watchword.config import Settings
from watchword.config import options as config_options
from watchword.domain import CredentialKind
from watchword.hygiene.usage import UsageCounter
from watchword.identify.credential_state import is_usable
from watchword.observe.interceptor import ObserveInterceptor
from watchword.store.repository import Store
from watchword.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc

# How long the stop waits for clients to see what it did (a held refusal, a GOAWAY): loopback and LAN
# round trips are far shorter.
GOAWAY_SECONDS = 0.1

SERVICE_NAMES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    ext_authz.SERVICE_NAME,
)
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


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


@dataclass
class Drain:
    """SIGTERM's first step: health says NOT_SERVING, new calls get a clean UNAVAILABLE with a reason
    while the admitted ones finish within the grace. `ends` is when the grace is over."""

    health: health.aio.HealthServicer
    overload: OverloadInterceptor
    grace_seconds: float
    ends: float = field(default=0.0)  # no drain yet (a failed start): the stop waits for nothing

    async def __call__(self) -> None:
        await self.health.enter_graceful_shutdown()
        self.ends = time.monotonic() + self.grace_seconds
        self.overload.drain()
        await self.overload.wait_idle(self.grace_seconds)

    def remaining(self) -> float:
        return max(self.ends - time.monotonic(), 0.1)


@dataclass(frozen=True)
class GrpcServer:
    """The started gRPC server: its port, its overload bound (shared with E4) and its drain."""

    port: int
    overload: OverloadInterceptor
    drain: Drain

    async def serving(self) -> None:
        await set_health(self.drain.health, health_pb2.HealthCheckResponse.SERVING)


async def build_grpc_server(
    stack: AsyncExitStack,
    settings: Settings,
    prepared: Prepared,
    answering: Answering,
    observing: Observing,
    shared_port: bool,
) -> GrpcServer:
    """Started, and NOT_SERVING until every listener is up. `shared_port`: one of several worker
    processes on the same port (SO_REUSEPORT)."""
    overload = OverloadInterceptor(settings.max_concurrent_rpcs)
    admin = admin_token_checker(prepared.store, answering.pipeline.usage)
    # Observing first, so every answer is timed and audited with its request id; then the bound: an
    # excess call is refused before anything else is done for it.
    observe = ObserveInterceptor(observing.metrics, observing.audit, served_methods())
    server = grpc.aio.server(
        interceptors=[observe, overload, admin, GuardInterceptor()],
        options=config_options.grpc_server_options(settings, shared_port),
    )
    add_services(server, settings, prepared, answering, admin, observing)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    # Bound right before it starts: grpc holds a bound port until the server has started and stopped.
    port = bind(server, settings)
    await server.start()
    drain = Drain(health_servicer, overload, settings.shutdown_grace_seconds)
    on_close(stack, "the gRPC server", lambda: stop(server, overload, drain))
    return GrpcServer(port, overload, drain)


def add_services(
    server: grpc.aio.Server,
    settings: Settings,
    prepared: Prepared,
    answering: Answering,
    admin: AdminAuthInterceptor,
    observing: Observing,
) -> None:
    """AuthService, AdminService, Envoy's ext_authz Check (E1) and reflection."""
    auth = AuthServicer(
        answering.pipeline,
        settings.max_token_bytes,
        settings.max_request_headers,
        settings.max_batch_entries,
        answering.grants,
        answering.signer,
        admin.check,
        observing.recorder,
        max_batch_credentials=settings.max_batch_credentials,
    )
    auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(
            prepared.store,
            prepared.catalogue,
            prepared.master_key,
            revocation_lifetime=settings.max_token_lifetime_seconds,
            keyring=prepared.keyring,
            issuers=settings.issuers,
        ),
        server,
    )
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
        ext_authz.ExtAuthzServicer(answering.ext_authz), server
    )
    reflection.enable((*SERVICE_NAMES, HEALTH_SERVICE_NAME), server)


def admin_token_checker(store: Store, usage: UsageCounter | None = None) -> AdminAuthInterceptor:
    """AdminService calls carry a usable admin token (constant-time comparison of its hash); each use is
    counted in `usage` (key hygiene)."""

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
        if usage is not None:
            usage.count(record.id, now)
        return record.id

    return AdminAuthInterceptor(check)


def bind(server: grpc.aio.Server, settings: Settings) -> int:
    """The gRPC port; grpc says only "Failed to bind" (in use, or an address not on this host)."""
    address = config_options.grpc_address(settings)
    try:
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return server.add_insecure_port(address)
        key_pair = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
        return server.add_secure_port(address, server_credentials(settings, key_pair))
    except RuntimeError:
        reason = "the port is in use or the address is not local"
        raise StartupError(f"cannot listen on {address}: {reason}") from None


def server_credentials(settings: Settings, key_pair: tuple[bytes, bytes]) -> grpc.ServerCredentials:
    """TLS, and with `tls_client_auth = "require"` mutual TLS (C10): the handshake itself refuses a client
    without a certificate chaining to tls_client_ca_file (grpc can require a certificate, not request one)."""
    if settings.tls_client_auth != "require" or settings.tls_client_ca_file is None:
        return grpc.ssl_server_credentials([key_pair])
    roots = settings.tls_client_ca_file.read_bytes()
    return grpc.ssl_server_credentials([key_pair], root_certificates=roots, require_client_auth=True)


async def stop(server: grpc.aio.Server, overload: OverloadInterceptor, drain: Drain) -> None:
    """Stop so that every call refused sees UNAVAILABLE, never CANCELLED: refusals are held while the
    server tells each connection to go away (GOAWAY), then answered."""
    overload.hold_refusals()
    await asyncio.sleep(GOAWAY_SECONDS)  # each busy client's next call is now held, not in flight
    stopping = asyncio.create_task(server.stop(drain.remaining()))
    await asyncio.sleep(GOAWAY_SECONDS)  # every client has read the GOAWAY: no new call comes here
    overload.release_refusals()
    await stopping


async def set_health(servicer: health.aio.HealthServicer, status: int) -> None:
    for name in ("", *SERVICE_NAMES):
        await servicer.set(name, status)
