"""O3/O4: access tokens from a customer's OAuth2 token server (client credentials grant), cached.

Before a webhook goes to a customer's endpoint, the delivery service needs a Bearer token from the
customer's own token server. `TokenCache.token(endpoint, webhook_url)` answers one, fetching it only when
needed: the request is built by `client_auth`, sent by `pinned_transport` and read by `token_response`.

Caching:
- A token is reused until `refresh_margin_seconds` before it expires (`expires_in` counted from when the
  request was sent). A missing `expires_in` means `default_expires_in` (300 s by default: short enough
  that an unannounced expiry costs little, long enough to spare the token server). For short-lived tokens
  the margin shrinks to half the lifetime, so a 20 s token is still reused for 10 s; no token is reused
  for more than 24 h, whatever the server says.
- The cache key is the credential id, its `version` (a rotation never reuses a token fetched with the
  old secrets), its non-secret settings, and, for assertions, the audience (the default audience is the
  webhook URL, so two webhook URLs get two tokens).
- Single flight: every caller asking for the same key while a fetch runs awaits that one fetch (an
  asyncio task, shielded so that one caller's cancellation does not cancel it for the others).
- `force_refresh=True` (the endpoint answered 401) drops the cached token and fetches anew, joining a
  fetch already running; a token fetched less than `forced_refresh_min_interval_seconds` ago is kept,
  so a burst of 401s (or an endpoint that always answers 401) costs one token request, not one each.
  `drop(credential_id)` forgets the credential's tokens without that floor.

Failures are OutboundTokenError with a `reason` and `retryable`: unreachable, timeout, 5xx and 429 are
retried inside `token()` (exponential backoff with jitter, `max_attempts` in all, a Retry-After of up to
5 s is waited for; a longer one, cut to 5 minutes, fails at once with `retry_after` and later calls for
the same token fail at once until it has passed, without a request);
`invalid_client`/401, other 4xx, redirects, unusable answers and forbidden URLs are not retried.

Secrets (client secret, private key, assertions, access tokens) never appear in reprs, logs or
exception messages; the token URL appears without its query string.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import httpx

from watchword.identify.cache import trim_oldest
from watchword.observe import tracing
from watchword.outbound import client_auth, token_response
from watchword.outbound.network_guard import NetworkGuard, OutboundTokenError
from watchword.outbound.pinned_transport import PinnedTransport, redacted
from watchword.outbound.token_endpoint import TokenEndpoint

__all__ = ["FetchedToken", "OutboundTokenError", "TokenCache", "TokenCacheStats"]

log = logging.getLogger("watchword.outbound.tokens")

Clock = Callable[[], float]
MAX_CACHE_SECONDS = 24 * 3600.0
MAX_RETRY_AFTER_WAIT_SECONDS = 5.0  # longer waits fail at once: a delivery should not hang on them
MAX_BACKOFF_SECONDS = 5.0
_SWEEP_ABOVE_ENTRIES = 10_000
MAX_ENTRIES = 20_000  # tokens (and Retry-After waits) kept, oldest dropped first


@dataclass(frozen=True, slots=True)
class FetchedToken:
    access_token: str = field(repr=False)
    token_type: str  # always "Bearer": other types are refused
    expires_at: float  # on the cache's clock (time.monotonic by default)


@dataclass(slots=True)
class TokenCacheStats:
    """Counters for tests and metrics."""

    hits: int = 0  # token() answered from the cache
    fetches: int = 0  # shared fetches started (each one or more HTTP requests)
    http_requests: int = 0
    failures: int = 0  # fetches that ended in an error
    succeeded: int = 0  # fetches that brought a token
    failure_reasons: dict[str, int] = field(default_factory=dict)  # failures by reason, for metrics


@dataclass(frozen=True, slots=True)
class _Key:
    credential_id: str
    version: str
    settings: tuple[object, ...]
    audience: str


@dataclass(frozen=True, slots=True)
class _Entry:
    token: FetchedToken
    fetched_at: float
    refresh_at: float


class TokenCache:
    """Access tokens per outbound credential; see the module docstring for the rules."""

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        guard: NetworkGuard,
        clock: Clock = time.monotonic,
        refresh_margin_seconds: float = 30.0,
        default_expires_in: float = 300.0,
        timeout_seconds: float = 10.0,
        max_response_bytes: int = 65536,
        max_attempts: int = 3,
        backoff_seconds: float = 0.2,
        forced_refresh_min_interval_seconds: float = 5.0,
    ) -> None:
        if timeout_seconds <= 0 or max_response_bytes <= 0 or max_attempts < 1:
            raise ValueError("timeout_seconds and max_response_bytes must be positive, max_attempts >= 1")
        if min(refresh_margin_seconds, default_expires_in, backoff_seconds) < 0:
            raise ValueError("refresh_margin_seconds, default_expires_in and backoff_seconds must be >= 0")
        self.stats = TokenCacheStats()
        self._clock = clock
        self._margin = refresh_margin_seconds
        self._default_expires_in = default_expires_in
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._forced_floor = forced_refresh_min_interval_seconds
        self._transport = PinnedTransport(
            client,
            guard=guard,
            timeout_seconds=timeout_seconds,
            max_response_bytes=max_response_bytes,
            on_request=self._count_request,
        )
        self._entries: dict[_Key, _Entry] = {}
        self._inflight: dict[_Key, asyncio.Task[_Entry]] = {}
        self._not_before: dict[_Key, float] = {}  # a long Retry-After, per key
        self._closed = False

    @property
    def guard(self) -> NetworkGuard:
        return self._transport.guard

    def _count_request(self) -> None:
        self.stats.http_requests += 1

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- public ----

    async def token(
        self, endpoint: TokenEndpoint, webhook_url: str, *, force_refresh: bool = False
    ) -> FetchedToken:
        """A token for a delivery to `webhook_url`; raises OutboundTokenError when none can be had."""
        if self._closed:
            raise RuntimeError("the token cache is closed")
        key = _Key(
            endpoint.credential_id, endpoint.version, endpoint.settings(), endpoint.audience_for(webhook_url)
        )
        cached = self._cached(key, force_refresh)
        if cached is not None:
            return cached
        task = self._inflight.get(key) or self._start_fetch(key, endpoint)
        try:
            fetched = await asyncio.shield(task)
        except OutboundTokenError as exc:
            raise exc.copy() from None
        return fetched.token

    def drop(self, credential_id: str) -> None:
        """Forget every token of this credential (the customer answered 401, or it was deleted)."""
        for key in [key for key in self._entries if key.credential_id == credential_id]:
            del self._entries[key]

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()
        await self._transport.aclose()

    # ---- the cache ----

    def _cached(self, key: _Key, force_refresh: bool) -> FetchedToken | None:
        """The cached token, unless it is due for refresh or a forced refresh may drop it."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if force_refresh and now - entry.fetched_at >= self._forced_floor:
            del self._entries[key]
            return None
        if now < entry.refresh_at:
            self.stats.hits += 1
            return entry.token
        return None

    def _start_fetch(self, key: _Key, endpoint: TokenEndpoint) -> asyncio.Task[_Entry]:
        """A new shared fetch, unless the server's long Retry-After for this key has not passed."""
        not_before = self._not_before.get(key)
        if not_before is not None:
            now = self._clock()
            if now < not_before:
                raise OutboundTokenError(
                    "token_server_error",
                    "the token server asked Watchword to wait (Retry-After)",
                    retryable=True,
                    retry_after=not_before - now,
                )
            del self._not_before[key]
        task = asyncio.get_running_loop().create_task(self._fetch(key, endpoint))
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._fetch_done(key, done))
        return task

    def _store(self, key: _Key, access_token: str, expires_in: float, started: float) -> _Entry:
        # Counted from when the request left: the server's clock started no later than that.
        lifetime = min(max(expires_in - self._margin, expires_in / 2), MAX_CACHE_SECONDS)
        entry = _Entry(
            FetchedToken(access_token, "Bearer", started + expires_in), started, started + lifetime
        )
        # Tokens of the credential's earlier versions or settings will never be asked for again.
        stale = [
            other
            for other in self._entries
            if other.credential_id == key.credential_id
            and (other.version, other.settings) != (key.version, key.settings)
        ]
        for other in stale:
            del self._entries[other]
        self._entries[key] = entry
        self._not_before.pop(key, None)
        self._sweep()
        return entry

    def _sweep(self) -> None:
        if len(self._entries) > _SWEEP_ABOVE_ENTRIES:
            now = self._clock()
            for other in [k for k, e in self._entries.items() if e.token.expires_at <= now]:
                del self._entries[other]
        trim_oldest(self._entries, MAX_ENTRIES)  # unexpired tokens of many audiences: still bounded

    # ---- one shared fetch ----

    def _fetch_done(self, key: _Key, task: asyncio.Task[_Entry]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: waiters that gave up must not leave "never retrieved" noise

    async def _fetch(self, key: _Key, endpoint: TokenEndpoint) -> _Entry:
        self.stats.fetches += 1
        attempt = 0
        while True:
            attempt += 1
            started = self._clock()
            try:
                access_token, expires_in = await self._attempt(endpoint, key.audience)
            except OutboundTokenError as exc:
                wait = self._retry_wait(exc, attempt)
                if wait is None:
                    raise self._failed(key, endpoint, exc, attempt) from None
                await asyncio.sleep(wait)
                continue
            self.stats.succeeded += 1
            return self._store(key, access_token, expires_in, started)

    async def _attempt(self, endpoint: TokenEndpoint, audience: str) -> tuple[str, float]:
        headers, body = client_auth.token_request(endpoint, audience)
        where = {"server.address": httpx.URL(endpoint.token_url).host}  # never the credential's id
        with tracing.span("outbound token fetch", where, tracing.CLIENT) as fetching:
            answer = await self._transport.post_form(endpoint.token_url, headers, body)
            tracing.answered(fetching, answer.status)
        return token_response.read_answer(
            answer.status,
            answer.headers,
            answer.body,
            answer.problem,
            where=redacted(endpoint.token_url),
            default_expires_in=self._default_expires_in,
        )

    def _retry_wait(self, exc: OutboundTokenError, attempt: int) -> float | None:
        """How long to wait before the next attempt, or None to give up now."""
        if not exc.retryable or attempt >= self._max_attempts:
            return None
        wait = min(self._backoff * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        wait *= random.uniform(0.5, 1.0)  # noqa: S311 -- jitter, not a secret: spreads synchronized retries
        if exc.retry_after is not None:
            if exc.retry_after > MAX_RETRY_AFTER_WAIT_SECONDS:
                return None
            wait = max(wait, exc.retry_after)
        return wait

    def _failed(
        self, key: _Key, endpoint: TokenEndpoint, exc: OutboundTokenError, attempts: int
    ) -> OutboundTokenError:
        self.stats.failures += 1
        self.stats.failure_reasons[exc.reason] = self.stats.failure_reasons.get(exc.reason, 0) + 1
        if exc.retry_after is not None:
            self._not_before[key] = self._clock() + exc.retry_after
            trim_oldest(self._not_before, MAX_ENTRIES)
        detail = exc.detail + (f" (after {attempts} attempts)" if attempts > 1 else "")
        log.warning(
            "no access token for outbound credential %s from %s: %s: %s",
            endpoint.credential_id,
            redacted(endpoint.token_url),
            exc.reason,
            detail,
        )
        return OutboundTokenError(exc.reason, detail, retryable=exc.retryable, retry_after=exc.retry_after)
