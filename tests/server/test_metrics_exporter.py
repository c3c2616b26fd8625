"""Metrics pieces on their own: the loop histogram, one registry per server, the counts collected."""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as st

from watchword.identify.jwks_source import JwksStats
from watchword.observe import metrics as observe_metrics
from watchword.observe.metrics import LATENCY_BUCKETS, LoopHistogram, Metrics
from watchword.outbound.token_cache import TokenCacheStats

from support.observe import sample, scrape


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=200))
def test_loop_histogram_matches_le_semantics(values: list[float]) -> None:
    histogram = LoopHistogram()
    for value in values:
        histogram.observe(value)
    buckets, total = histogram.cumulative()
    assert [bound for bound, _ in buckets] == [*map(repr, LATENCY_BUCKETS), "+Inf"]
    for (bound, count), limit in zip(buckets, (*LATENCY_BUCKETS, float("inf")), strict=True):
        assert count == sum(1 for value in values if value <= limit), bound
    assert abs(total - sum(values)) < 1e-6


class Counting:
    def __init__(self, hits: int, misses: int) -> None:
        self.hits, self.misses = hits, misses


def test_two_servers_in_one_process_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()
    first.count_decision(("Authenticate", "api_key", "allow", "allowed"))
    first.count_decision(("Authenticate", "api_key", "allow", "allowed"))
    second.count_decision(("Authorize", "unknown", "refused", "credential_unknown"))
    first.watch_cache("credentials", Counting(5, 2))
    first.revocation_delay.observe(0.02)
    servers = [observe_metrics.serve(metrics, "127.0.0.1", 0) for metrics in (first, second)]
    try:
        one, two = (scrape(server.port) for server in servers)
    finally:
        for server in servers:
            server.stop()
    name = "watchword_decisions_total"
    assert sample(one, name, rpc="Authenticate", kind="api_key", result="allow", reason="allowed") == 2
    assert sample(two, name, rpc="Authenticate", kind="api_key", result="allow", reason="allowed") == 0
    assert (
        sample(two, name, rpc="Authorize", kind="unknown", result="refused", reason="credential_unknown") == 1
    )
    assert sample(one, "watchword_cache_requests_total", cache="credentials", result="hit") == 5
    assert sample(one, "watchword_cache_requests_total", cache="credentials", result="miss") == 2
    assert sample(one, "watchword_revocation_propagation_seconds_count") == 1
    assert sample(one, "watchword_revocation_propagation_seconds_bucket", le="0.025") == 1
    assert sample(one, "watchword_revocation_propagation_seconds_bucket", le="0.01") == 0
    assert sample(two, "watchword_revocation_propagation_seconds_count") == 0


def test_jwks_and_token_fetch_counts_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    jwks = JwksStats()
    fetches = TokenCacheStats()
    metrics.watch_jwks(lambda: {"https://idp.example": jwks})
    metrics.watch_token_fetches(fetches)
    server = observe_metrics.serve(metrics, "127.0.0.1", 0)
    try:
        jwks.succeeded, jwks.failures, jwks.rate_limited = 3, 1, 4
        fetches.succeeded = 7
        fetches.failure_reasons["token_server_timeout"] = 2
        families = scrape(server.port)
    finally:
        server.stop()
    name = "watchword_jwks_refreshes_total"
    assert sample(families, name, issuer="https://idp.example", result="ok") == 3
    assert sample(families, name, issuer="https://idp.example", result="failed") == 1
    assert sample(families, name, issuer="https://idp.example", result="rate_limited") == 4
    assert sample(families, "watchword_outbound_token_fetches_total", result="ok") == 7
    assert sample(families, "watchword_outbound_token_fetches_total", result="token_server_timeout") == 2


def test_the_exporter_stops_and_frees_its_port() -> None:
    server = observe_metrics.serve(Metrics(), "127.0.0.1", 0)
    port = server.port
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    server.stop()
    again = observe_metrics.serve(Metrics(), "127.0.0.1", port)
    again.stop()
