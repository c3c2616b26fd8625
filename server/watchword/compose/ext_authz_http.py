"""E4: Envoy's HTTP ext_authz (`http_service`) on a port of its own, beside the gRPC Check (E1).

`serve_ext_authz_http` is the one place that decides how the port is served; whatever it returns needs
only `.port` and an async `stop()` (`Serving`)."""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack

from watchword import listeners
from watchword.api.overload import OverloadInterceptor
from watchword.compose.failures import on_close
from watchword.compose.http_servers import Serving, open_listener, serve_uvicorn
from watchword.config import Settings
from watchword.ext_authz.core import ExtAuthzCore
from watchword.ext_authz.http import HttpFrontDoor
from watchword.observe import metrics as observe_metrics


async def build_ext_authz_http(
    stack: AsyncExitStack,
    settings: Settings,
    core: ExtAuthzCore,
    overload: OverloadInterceptor,
    metrics: observe_metrics.Metrics,
    shared_port: bool,
) -> Serving | None:
    """The E4 port (None: `ext_authz_http_port` not set), its checks bounded with the gRPC calls."""
    if settings.ext_authz_http_port is None:
        return None
    host, port = settings.ext_authz_http_host, settings.ext_authz_http_port
    listener = open_listener(stack, "ext_authz HTTP", host, port, shared_port)
    serving = await serve_ext_authz_http(settings, core, overload, metrics, listener)
    on_close(stack, "the ext_authz HTTP front door", serving.stop)
    return serving


async def serve_ext_authz_http(
    settings: Settings,
    core: ExtAuthzCore,
    overload: OverloadInterceptor,
    metrics: observe_metrics.Metrics,
    listener: socket.socket,
) -> Serving:
    """httptools (the fast parser), no Server/Date headers (Envoy would pass them to the client)."""
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
