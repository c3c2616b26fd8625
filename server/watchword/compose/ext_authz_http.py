"""E4: Envoy's HTTP ext_authz (`http_service`) on a port of its own, beside the gRPC Check (E1).

`serve_ext_authz_http` is the one place that decides how the port is served; whatever it returns needs
only `.port` and an async `stop()` (`Serving`)."""

from __future__ import annotations

import socket
import ssl
from contextlib import AsyncExitStack

from watchword import listeners
from watchword.api.overload import OverloadInterceptor
from watchword.compose.failures import on_close
from watchword.compose.http_servers import Serving, open_listener, tls_context
from watchword.config import Settings
from watchword.config import options as config_options
from watchword.ext_authz.core import ExtAuthzCore
from watchword.ext_authz.http import RPC, HttpFrontDoor
from watchword.ext_authz.http_server import CheckListener
from watchword.observe import metrics as observe_metrics
from watchword.observe import tracing


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
    tls = tls_context("the ext_authz HTTP door", config_options.ext_authz_http_tls, settings)
    listener = open_listener(stack, "ext_authz HTTP", host, port, shared_port)
    serving = await serve_ext_authz_http(settings, core, overload, metrics, listener, tls)
    on_close(stack, "the ext_authz HTTP front door", serving.stop)
    return serving


async def serve_ext_authz_http(
    settings: Settings,
    core: ExtAuthzCore,
    overload: OverloadInterceptor,
    metrics: observe_metrics.Metrics,
    listener: socket.socket,
    tls: ssl.SSLContext | None = None,
) -> Serving:
    """The port's own listener (ext_authz/http_server.py: llhttp, answers in order, no Server or Date
    header, which Envoy would pass on to the client), with the bounds of the other HTTP ports; over `tls`
    when given (the hop from Envoy; the end user's certificate arrives in XFCC, never from this TLS)."""
    door = HttpFrontDoor(core, settings.ext_authz_http_path_prefix, overload, metrics)
    serving = CheckListener(
        tracing.traced_http_check(door, RPC) if tracing.enabled else door,
        config_options.connections_per_port(settings),
        settings.idle_timeout_seconds,
        listeners.ENVOY_MAX_HEADER_BYTES,
        stop_grace_seconds=settings.shutdown_grace_seconds,
        tls=tls,
    )
    await serving.start(listener)
    return serving
