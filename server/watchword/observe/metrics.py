"""Prometheus metrics, on an HTTP port of their own, from a registry per server (not the global one).

The hot path only touches plain ints, dicts and lists owned by the event loop: counts are turned into
metric families when Prometheus scrapes (`_Collector.collect`, in the exporter's thread, which only copies
them). The one metric observed outside the RPC path, the revocation propagation delay, is an ordinary
thread-safe prometheus_client Histogram.

Revocation delay hook: whoever applies a revocation that another replica published calls
`metrics.revocation_delay.observe(seconds_since_it_was_published)`.
"""

from __future__ import annotations

import socket
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

# RPC latency: from a warm-cache Authenticate (well under a millisecond) to a slow store or token server.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Revocation propagation: the target is well under a second.
REVOCATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# (rpc, credential kind, result, reason) -> decisions made
DecisionKey = tuple[str, str, str, str]
# (rpc, reason) -> ext_authz refusals allowed in dry-run
DryRunKey = tuple[str, str]


class HitCounting(Protocol):
    hits: int
    misses: int


class JwksCounting(Protocol):
    refreshes: int
    succeeded: int
    failures: int
    rate_limited: int


class TokenFetchCounting(Protocol):
    succeeded: int
    failure_reasons: dict[str, int]


class AuditCounting(Protocol):
    written: int
    dropped: int


class LoopHistogram:
    """A histogram observed from the event loop only: a bisect and two additions per observation."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        counts, total = list(self.counts), self.total
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets, total


class UsageFlushCounting(Protocol):
    flushed: int
    failed: int
    rows_written: int
    dropped: int
    pending: int


class LeakReportCounting(Protocol):
    reports: dict[str, int]
    tokens: dict[str, int]


class Metrics:
    """Everything one server counts; `registry` is what its exporter serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.in_flight = 0
        self.rpc_latency: dict[str, LoopHistogram] = {}
        self.decisions: dict[DecisionKey, int] = {}
        self.dry_run_denials: dict[DryRunKey, int] = {}
        self._caches: dict[str, HitCounting] = {}
        self._jwks: Callable[[], Mapping[str, JwksCounting]] = dict
        self._token_fetches: TokenFetchCounting | None = None
        self._audit: AuditCounting | None = None
        self._usage: UsageFlushCounting | None = None
        self._leaks: LeakReportCounting | None = None
        self.revocation_delay = Histogram(
            "watchword_revocation_propagation_seconds",
            "Time from a revocation or deactivation on one replica to its cache drop on this one.",
            buckets=REVOCATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Collector(self))

    def latency(self, method: str) -> LoopHistogram:
        """The latency histogram of one RPC method (created on its first call; methods are few)."""
        histogram = self.rpc_latency.get(method)
        if histogram is None:
            histogram = self.rpc_latency[method] = LoopHistogram()
        return histogram

    def count_decision(self, key: DecisionKey) -> None:
        self.decisions[key] = self.decisions.get(key, 0) + 1

    def count_dry_run_denial(self, key: DryRunKey) -> None:
        self.dry_run_denials[key] = self.dry_run_denials.get(key, 0) + 1

    def watch_cache(self, name: str, cache: HitCounting) -> None:
        self._caches[name] = cache

    def watch_jwks(self, sources: Callable[[], Mapping[str, JwksCounting]]) -> None:
        self._jwks = sources

    def watch_token_fetches(self, stats: TokenFetchCounting) -> None:
        self._token_fetches = stats

    def watch_audit(self, audit: AuditCounting) -> None:
        self._audit = audit

    def watch_usage(self, usage: UsageFlushCounting) -> None:
        self._usage = usage

    def watch_leak_reports(self, leaks: LeakReportCounting) -> None:
        self._leaks = leaks


class _Collector(Collector):
    """Turns the plain counts into metric families at scrape time (copies first: the loop keeps going)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[object]:
        return ()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        metrics = self._metrics
        decisions = CounterMetricFamily(
            "watchword_decisions",
            "Decisions made, by RPC, credential kind, result (allow, deny, refused, error) and reason.",
            labels=["rpc", "kind", "result", "reason"],
        )
        for key, count in sorted(dict(metrics.decisions).items()):
            decisions.add_metric(list(key), count)
        yield decisions

        dry_run = CounterMetricFamily(
            "watchword_dry_run_denials",
            "Envoy checks allowed in dry-run that would have been refused or denied, by RPC and reason.",
            labels=["rpc", "reason"],
        )
        for dry_key, count in sorted(dict(metrics.dry_run_denials).items()):
            dry_run.add_metric(list(dry_key), count)
        yield dry_run

        latency = HistogramMetricFamily(
            "watchword_rpc_duration_seconds", "Time spent serving each RPC method.", labels=["method"]
        )
        for method, histogram in sorted(dict(metrics.rpc_latency).items()):
            buckets, total = histogram.cumulative()
            latency.add_metric([method], buckets, total)
        yield latency

        yield GaugeMetricFamily("watchword_rpcs_in_flight", "RPCs being served now.", value=metrics.in_flight)

        caches = CounterMetricFamily(
            "watchword_cache_requests",
            "Cache lookups, by cache and result (hit or miss).",
            labels=["cache", "result"],
        )
        for name, cache in sorted(dict(metrics._caches).items()):
            caches.add_metric([name, "hit"], cache.hits)
            caches.add_metric([name, "miss"], cache.misses)
        yield caches

        jwks = CounterMetricFamily(
            "watchword_jwks_refreshes",
            "JWKS refreshes of external issuers, by issuer and result (ok, failed, rate_limited).",
            labels=["issuer", "result"],
        )
        for issuer, stats in sorted(dict(metrics._jwks()).items()):
            jwks.add_metric([issuer, "ok"], stats.succeeded)
            jwks.add_metric([issuer, "failed"], stats.failures)
            jwks.add_metric([issuer, "rate_limited"], stats.rate_limited)
        yield jwks

        fetches = CounterMetricFamily(
            "watchword_outbound_token_fetches",
            "OAuth token fetches for outbound credentials, by result (ok, or the failure's reason).",
            labels=["result"],
        )
        if metrics._token_fetches is not None:
            fetches.add_metric(["ok"], metrics._token_fetches.succeeded)
            for reason, count in sorted(dict(metrics._token_fetches.failure_reasons).items()):
                fetches.add_metric([reason], count)
        yield fetches

        yield from _hygiene_families(metrics._usage, metrics._leaks)

        if metrics._audit is not None:
            yield CounterMetricFamily(
                "watchword_audit_records_written", "Audit records written.", value=metrics._audit.written
            )
            yield CounterMetricFamily(
                "watchword_audit_records_dropped",
                "Audit records dropped because the writer fell behind (its queue was full).",
                value=metrics._audit.dropped,
            )


def _hygiene_families(
    usage: UsageFlushCounting | None, leaks: LeakReportCounting | None
) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Key hygiene: the usage flusher's writes, and the leaked-key reports."""
    if usage is not None:
        flushes = CounterMetricFamily(
            "watchword_credential_usage_flushes",
            "Writes of counted credential uses to the store, by result (ok, failed: kept for the next).",
            labels=["result"],
        )
        flushes.add_metric(["ok"], usage.flushed)
        flushes.add_metric(["failed"], usage.failed)
        yield flushes
        yield CounterMetricFamily(
            "watchword_credential_usage_rows_written",
            "Per-day usage rows added to by the flushes.",
            value=usage.rows_written,
        )
        yield CounterMetricFamily(
            "watchword_credential_usage_dropped",
            "Credential uses not recorded because the in-memory bound was reached (usage_max_pending).",
            value=usage.dropped,
        )
        yield GaugeMetricFamily(
            "watchword_credential_usage_pending",
            "Usage rows counted but not yet written (a store outage keeps them for the next flush).",
            value=usage.pending,
        )
    if leaks is not None:
        reports = CounterMetricFamily(
            "watchword_leak_reports",
            "Leaked-key reports received, by result (accepted, or the reason code of the refusal).",
            labels=["result"],
        )
        for result, count in sorted(dict(leaks.reports).items()):
            reports.add_metric([result], count)
        yield reports
        tokens = CounterMetricFamily(
            "watchword_leaked_tokens",
            "Tokens in accepted leak reports, by outcome (deactivated, flagged, already_deactivated, "
            "already_flagged, false_positive).",
            labels=["outcome"],
        )
        for outcome, count in sorted(dict(leaks.tokens).items()):
            tokens.add_metric([outcome], count)
        yield tokens


@dataclass
class MetricsServer:
    """The exporter's HTTP server (prometheus_client's, in a daemon thread)."""

    httpd: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# The exporter serves a scraper or two: a few connections, each closed when idle (a thread apiece).
MAX_METRICS_CONNECTIONS = 16


class _QuietHandler(WSGIRequestHandler):
    """A connection that sends nothing for `timeout` seconds is closed (StreamRequestHandler applies it);
    requests are not logged."""

    timeout = 10.0

    def log_message(self, format: str, *args: object) -> None:
        pass


class _BoundedServer(ThreadingWSGIServer):
    """prometheus_client's threading server, holding at most MAX_METRICS_CONNECTIONS connections: past
    it a new one is closed at once instead of getting a thread of its own."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._slots = threading.BoundedSemaphore(MAX_METRICS_CONNECTIONS)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(metrics: Metrics, host: str, port: int, idle_seconds: float = 10.0) -> MetricsServer:
    return serve_registry(metrics.registry, host, port, idle_seconds)


def serve_registry(
    registry: CollectorRegistry, host: str, port: int, idle_seconds: float = 10.0
) -> MetricsServer:
    """Serve what `registry` collects (a server's Metrics, or a supervisor's view of its workers)."""
    handler = type("Handler", (_QuietHandler,), {"timeout": idle_seconds})
    server_class = type(
        "Server", (_BoundedServer,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET}
    )
    httpd = make_server(host, port, make_wsgi_app(registry), server_class, handler_class=handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return MetricsServer(httpd, thread)
