"""One serving process, composed of the builders under one AsyncExitStack: each builder pushes the closer
of what it opened right after opening it, so a failed start closes exactly what it opened, in reverse
order, and the stop is the same stack unwinding: drain (health NOT_SERVING, in-flight calls finish),
then the E4 and OAuth HTTP listeners, the gRPC server, the metrics port, the change feed, the outbound
token client, the usage flusher (its last flush), the JWKS client, the audit log and last the store."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TextIO

from watchword.compose.deciding import build_answering
from watchword.compose.ext_authz_http import build_ext_authz_http
from watchword.compose.failures import on_close
from watchword.compose.grpc_server import build_grpc_server
from watchword.compose.http_servers import Serving, build_oauth_http
from watchword.compose.observing import build_metrics_port, build_observing
from watchword.compose.replica import LoadReplica, Prepared
from watchword.config import Settings
from watchword.config import options as config_options
from watchword.http_api import INTROSPECT_PATH, REVOKE_PATH
from watchword.observe import metrics as observe_metrics


@dataclass
class RunningServer:
    """A started server: where it listens, what it counts, and what its stop unwinds."""

    port: int
    metrics: observe_metrics.Metrics
    http: Serving | None = None
    ext_authz_http: Serving | None = None
    metrics_server: observe_metrics.MetricsServer | None = None
    admin_token: str | None = None
    closers: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish within the grace period, then close the rest."""
        await self.closers.aclose()


async def start_worker(
    settings: Settings, load: LoadReplica, out: TextIO = sys.stdout, shared_ports: bool = False
) -> RunningServer:
    """Load the replica (`prepare` or `attach`) and serve it. `shared_ports`: one of several worker
    processes on the same ports (SO_REUSEPORT)."""
    async with AsyncExitStack() as stack:
        prepared = await load(stack, settings)
        running = await compose(stack, settings, prepared, out, shared_ports)
        running.closers = stack.pop_all()  # started: from here on `stop()` unwinds it
    return running


async def compose(
    stack: AsyncExitStack, settings: Settings, prepared: Prepared, out: TextIO, shared_ports: bool
) -> RunningServer:
    """The builders in start order; health says SERVING only once every listener is up."""
    observing = build_observing(stack, settings, out)
    answering = await build_answering(stack, settings, prepared, observing)
    metrics_server = build_metrics_port(stack, settings, observing.metrics)
    grpc = await build_grpc_server(stack, settings, prepared, answering, observing, shared_ports)
    http = await build_oauth_http(stack, settings, prepared, answering, observing.recorder, shared_ports)
    ext_authz_http = await build_ext_authz_http(
        stack, settings, answering.ext_authz, grpc.overload, observing.metrics, shared_ports
    )
    # C9: the token endpoint's URL as the metadata publishes it is an assertion `aud` too, so a client
    # configured from the metadata works out of the box.
    http_port = http.port if http is not None else settings.http_port
    answering.pipeline.clients.accept_audience(config_options.public_token_endpoint(settings, http_port))
    # I7: and the introspection and revocation endpoints' URLs, which clients (authlib) sign for there.
    for path in (INTROSPECT_PATH, REVOKE_PATH):
        answering.pipeline.clients.accept_audience(config_options.public_base_url(settings, http_port) + path)
    on_close(stack, "the graceful drain", grpc.drain)  # the first step of the stop
    await grpc.serving()
    return RunningServer(
        grpc.port, observing.metrics, http, ext_authz_http, metrics_server, prepared.admin_token
    )
