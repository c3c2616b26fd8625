"""Builders of what the server is seen through: tracing, the audit log, the metrics and the metrics port."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TextIO

from watchword.caches import CacheRegistry
from watchword.compose.failures import StartupError, cannot_serve, on_close
from watchword.config import Settings
from watchword.config.options import audit_log_path
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.observe import metrics as observe_metrics
from watchword.observe import tracing
from watchword.observe.audit import AuditLog
from watchword.observe.decisions import Recorder
from watchword.outbound.token_cache import TokenCache


@dataclass(frozen=True)
class Observing:
    """The server's metrics, its audit log (None: off) and the recorder of decisions that feeds both."""

    metrics: observe_metrics.Metrics
    audit: AuditLog | None
    recorder: Recorder


def build_observing(stack: AsyncExitStack, settings: Settings, out: TextIO) -> Observing:
    build_tracing(stack)
    metrics = observe_metrics.Metrics()
    audit = open_audit(stack, settings, out) if settings.audit_enabled else None
    return Observing(metrics, audit, Recorder(metrics, audit))


def build_tracing(stack: AsyncExitStack) -> None:
    """Tracing as the `OTEL_*` variables say (off by default), in this process (each worker has its own):
    on before the pipeline and the front doors are built, which wrap their phases only when it is on."""
    try:
        trace_settings = tracing.read_settings()
    except tracing.TracingConfigError as exc:
        raise StartupError(f"cannot trace: {exc}") from None
    if trace_settings is None:
        return
    tracing.start(trace_settings)
    # Unwound after the gRPC server and the listeners have stopped: the spans of the last calls go out.
    on_close(stack, "tracing", lambda: asyncio.to_thread(tracing.shutdown))


def open_audit(stack: AsyncExitStack, settings: Settings, out: TextIO) -> AuditLog:
    path = audit_log_path(settings)
    audit = AuditLog(path, stream=out)
    try:
        audit.start()
    except OSError as exc:
        raise StartupError(f"cannot open audit_log_file {str(path)!r}: {exc.strerror or exc}") from None
    # Unwound after the gRPC server has stopped: every record of the last call is written.
    on_close(stack, "the audit log", lambda: asyncio.to_thread(audit.close))
    return audit


def build_metrics_port(
    stack: AsyncExitStack, settings: Settings, metrics: observe_metrics.Metrics
) -> observe_metrics.MetricsServer | None:
    """The metrics port, bound before the gRPC port: a port in use stops the start before any is served."""
    if not settings.metrics_enabled:
        return None
    with cannot_serve("metrics", settings.metrics_host, settings.metrics_port):
        server = observe_metrics.serve(
            metrics, settings.metrics_host, settings.metrics_port, settings.idle_timeout_seconds
        )
    on_close(stack, "the metrics port", lambda: asyncio.to_thread(server.stop))
    return server


def watch(
    observing: Observing,
    caches: CacheRegistry,
    outbound_tokens: TokenCache,
    external: ExternalJwtVerifier | None,
) -> None:
    """Point the metrics at the counts the caches, the JWKS sources and the token cache keep."""
    metrics = observing.metrics
    for name, cache in caches.counted():
        metrics.watch_cache(name, cache)
    metrics.watch_token_fetches(outbound_tokens.stats)
    if external is not None:
        metrics.watch_jwks(lambda: {issuer: source.stats for issuer, source in external.sources.items()})
    if observing.audit is not None:
        metrics.watch_audit(observing.audit)
