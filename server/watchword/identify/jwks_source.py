"""C1: the signing keys of one external issuer, kept in memory and refreshed with care.

- A known `kid` is answered from memory at once; after the cache time the next request also starts a
  refresh in the background (stale-while-revalidate), so a slow issuer never delays a known key.
- An unknown `kid` starts a refresh, but at most one per `refresh_min_interval_seconds`: junk kids must
  not make Watchword hammer the issuer. Callers asking while a refresh runs share that one fetch.
- A failed fetch (issuer down, 5xx, bad JSON, a key set that fails validation) keeps the keys already
  known, so an issuer that is down does not stop tokens signed with them.
- Fetches are bounded: per-operation timeouts and an overall deadline, 1 MB read by streaming, redirects
  followed only within the same origin, JSON objects only. Never a `jku`/`x5u` from a token: only the
  configured URLs are ever fetched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from watchword.identify.issuer_settings import MAX_CACHE_SECONDS, MIN_CACHE_SECONDS, IssuerSettings, check_url
from watchword.jose.jwk import KeySetError, VerificationKey, load_jwks
from watchword.observe import tracing

log = logging.getLogger("watchword.identify.jwks")

Clock = Callable[[], float]

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_KEYS = 100
MAX_REDIRECTS = 3
HTTP_TIMEOUT = httpx.Timeout(5.0)
FETCH_DEADLINE_SECONDS = 10.0  # whole refresh (discovery + JWKS), even against a slow-drip server
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})")
# A JWKS key without `alg` is bound to the algorithm of its curve; RSA keys to the first RSA one allowed.
_CURVE_ALGORITHMS = {
    "P-256": "ES256",
    "P-384": "ES384",
    "P-521": "ES512",
    "Ed25519": "EdDSA",
    "Ed448": "EdDSA",
}


class JwksSourceError(Exception):
    """A static key set (`jwks_file`) cannot be used: a start-up error, with what to fix."""


class _FetchError(Exception):
    """A fetch failed; the message is safe to log (no key material, no query strings)."""


@dataclass(slots=True)
class JwksStats:
    """Counters for tests and metrics."""

    refreshes: int = 0  # refresh attempts (each is one or two HTTP requests)
    succeeded: int = 0  # refresh attempts that brought a key set
    http_requests: int = 0
    failures: int = 0  # refresh attempts that kept the previous keys
    rate_limited: int = 0  # unknown-kid refreshes skipped by the rate limit


def _redacted(url: str) -> str:
    """The URL for logs: no query string, which might carry something secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _same_origin(first: httpx.URL, second: httpx.URL) -> bool:
    return (first.scheme, first.host, first.port) == (second.scheme, second.host, second.port)


def _cache_seconds(cache_control: str | None, default: int) -> int:
    if cache_control and (match := _MAX_AGE.search(cache_control.lower())):
        return max(MIN_CACHE_SECONDS, min(MAX_CACHE_SECONDS, int(match.group(1))))
    if cache_control and ("no-store" in cache_control.lower() or "no-cache" in cache_control.lower()):
        return MIN_CACHE_SECONDS
    return default


def _parse_json_object(body: bytes, what: str) -> dict[str, object]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise _FetchError(f"{what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise _FetchError(f"{what} is not a JSON object")
    return document


class JwksSource:
    """The keys of one issuer: `await source.key(kid)` answers a VerificationKey or None."""

    def __init__(
        self, settings: IssuerSettings, client: httpx.AsyncClient | None = None, clock: Clock = time.monotonic
    ) -> None:
        if settings.jwks_file is None and client is None:
            raise ValueError("a JWKS source with a URL needs an httpx.AsyncClient")
        self.settings = settings
        self.stats = JwksStats()
        self._client = client
        self._clock = clock
        self._keys: dict[str | None, VerificationKey] = {}
        self._discovered_jwks_uri: str | None = None
        self._next_refresh_at = 0.0  # monotonic; 0: never fetched
        self._last_unknown_kid_refresh: float | None = None
        self._inflight: asyncio.Task[bool] | None = None

    @property
    def is_static(self) -> bool:
        return self.settings.jwks_file is not None

    @property
    def keys(self) -> Mapping[str | None, VerificationKey]:
        return dict(self._keys)

    async def start(self, *, prime: bool = True) -> None:
        """Load a static key set (errors are start-up errors) or, with `prime`, fetch the remote one
        now. A remote fetch that fails is logged, never raised: the issuer may come back later."""
        if self.settings.jwks_file is not None:
            self._keys = self._load_static(self.settings.jwks_file)
        elif prime:
            await self.refresh()

    async def close(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def key(self, kid: str | None) -> VerificationKey | None:
        found = self._lookup(kid)
        if self.is_static:
            return found
        if found is not None:
            if self._clock() >= self._next_refresh_at:
                self._refresh_in_background()
            return found
        if (running := self._running()) is not None:
            await self._join(running)  # someone already asked: share their fetch
            return self._lookup(kid)
        if not self._may_refresh_for_unknown_kid():
            self.stats.rate_limited += 1
            return None
        await self.refresh()
        return self._lookup(kid)

    async def refresh(self) -> bool:
        """Fetch the key set now (or join the fetch already running); True when it succeeded."""
        if self.is_static:
            return True
        return await self._join(self._running() or self._start_refresh())

    # ---- lookup and rate limiting ----

    def _lookup(self, kid: str | None) -> VerificationKey | None:
        if kid is None:
            # No kid: only unambiguous when the issuer has a single key.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _may_refresh_for_unknown_kid(self) -> bool:
        now = self._clock()
        last = self._last_unknown_kid_refresh
        if last is not None and now - last < self.settings.refresh_min_interval_seconds:
            return False
        self._last_unknown_kid_refresh = now
        return True

    # ---- the shared refresh task ----

    def _start_refresh(self) -> asyncio.Task[bool]:
        self._inflight = asyncio.get_running_loop().create_task(self._refresh_once())
        return self._inflight

    def _running(self) -> asyncio.Task[bool] | None:
        return self._inflight if self._inflight is not None and not self._inflight.done() else None

    def _refresh_in_background(self) -> None:
        if self._running() is None:
            self._start_refresh()

    @staticmethod
    async def _join(task: asyncio.Task[bool]) -> bool:
        # Shielded: a caller that gives up (cancelled) must not cancel the fetch others wait for.
        return await asyncio.shield(task)

    async def _refresh_once(self) -> bool:
        self.stats.refreshes += 1
        try:
            async with asyncio.timeout(FETCH_DEADLINE_SECONDS):
                with tracing.span("jwks fetch", {"watchword.issuer": self.settings.issuer}, tracing.CLIENT):
                    keys, cache_seconds = await self._fetch_keys()
        except Exception as exc:  # any failure keeps the known keys; the reason is logged below
            self._record_failure(exc)
            return False
        finally:
            self._inflight = None
        if keys.keys() != self._keys.keys():
            log.info("issuer %s now has %d signing key(s)", self.settings.issuer, len(keys))
        self._keys = keys
        self._next_refresh_at = self._clock() + cache_seconds
        self.stats.succeeded += 1
        return True

    def _record_failure(self, exc: Exception) -> None:
        self.stats.failures += 1
        self._discovered_jwks_uri = None  # the JWKS may have moved: ask discovery again next time
        self._next_refresh_at = self._clock() + self.settings.refresh_min_interval_seconds
        if isinstance(exc, _FetchError):
            detail = str(exc)
        elif isinstance(exc, TimeoutError):
            detail = f"no answer within {FETCH_DEADLINE_SECONDS:g} s"
        elif isinstance(exc, httpx.HTTPError | httpx.InvalidURL | httpx.StreamError):
            detail = f"{type(exc).__name__}: the request failed"
        else:
            log.exception("unexpected error refreshing the keys of issuer %s", self.settings.issuer)
            return
        log.warning("keeping %d known key(s) of issuer %s: %s", len(self._keys), self.settings.issuer, detail)

    # ---- fetching ----

    async def _fetch_keys(self) -> tuple[dict[str | None, VerificationKey], int]:
        jwks_uri = self.settings.jwks_uri or await self._discover()
        document, cache_control = await self._get_json(jwks_uri, "the JWKS")
        keys = self._load(document, f"the JWKS at {_redacted(jwks_uri)}", _FetchError)
        return keys, _cache_seconds(cache_control, self.settings.jwks_cache_seconds)

    async def _discover(self) -> str:
        if self._discovered_jwks_uri is not None:
            return self._discovered_jwks_uri
        assert self.settings.discovery_url is not None
        document, _ = await self._get_json(self.settings.discovery_url, "the discovery document")
        if document.get("issuer") != self.settings.issuer:
            # OIDC Discovery §4.3: a document for another issuer must not supply our keys.
            raise _FetchError("the discovery document names another issuer than the configured one")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise _FetchError("the discovery document has no jwks_uri")
        try:
            check_url("jwks_uri", jwks_uri, self.settings.allow_insecure_http)
        except ValueError as exc:
            raise _FetchError(f"the discovery document's {exc}") from None
        self._discovered_jwks_uri = jwks_uri
        return jwks_uri

    async def _get_json(self, url: str, what: str) -> tuple[dict[str, object], str | None]:
        assert self._client is not None
        target = httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            self.stats.http_requests += 1
            async with self._client.stream(
                "GET",
                target,
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                timeout=HTTP_TIMEOUT,
                follow_redirects=False,
            ) as response:
                if response.is_redirect and "location" in response.headers:
                    target = self._redirect_target(target, response.headers["location"], what)
                    continue
                if response.status_code != 200:
                    raise _FetchError(
                        f"{what} at {_redacted(str(target))} answered HTTP {response.status_code}"
                    )
                body = await self._read_bounded(response, what)
                return _parse_json_object(body, what), response.headers.get("cache-control")
        raise _FetchError(f"{what}: more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _redirect_target(current: httpx.URL, location: str, what: str) -> httpx.URL:
        target = current.join(location)
        if not _same_origin(current, target):
            # The configured host is the trust anchor; a redirect elsewhere could swap the keys.
            raise _FetchError(f"{what} redirects to another origin; refused")
        return target

    @staticmethod
    async def _read_bounded(response: httpx.Response, what: str) -> bytes:
        # Raw bytes only: a compressed body could expand far beyond the bound while being decoded.
        if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
            raise _FetchError(f"{what} came compressed although identity was asked for")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
            raise _FetchError(f"{what} is larger than {MAX_DOCUMENT_BYTES} bytes")
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise _FetchError(f"{what} is larger than {MAX_DOCUMENT_BYTES} bytes")
        return bytes(body)

    # ---- validating a key set ----

    def _load_static(self, path: Path) -> dict[str | None, VerificationKey]:
        where = f"jwks_file {str(path)!r} of issuer {self.settings.issuer!r}"
        try:
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                raise JwksSourceError(f"{where} is larger than {MAX_DOCUMENT_BYTES} bytes")
            body = path.read_bytes()
        except OSError as exc:
            raise JwksSourceError(f"{where} cannot be read: {exc.strerror}") from None
        try:
            document = _parse_json_object(body, where)
        except _FetchError as exc:
            raise JwksSourceError(str(exc)) from None
        return self._load(document, where, JwksSourceError)

    def _load(
        self, document: Mapping[str, object], where: str, error: type[Exception]
    ) -> dict[str | None, VerificationKey]:
        entries = document.get("keys")
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise error(f"{where} has no `keys` list of objects")
        if any(entry.get("kty") == "oct" for entry in entries):
            # A published key set must never carry a shared secret: refuse it rather than guess.
            raise error(f"{where} publishes a symmetric (oct) key; an issuer's JWKS holds public keys only")
        usable = [
            {**entry, "alg": algorithm}
            for entry in entries
            if (algorithm := self._signature_algorithm(entry)) is not None
        ]
        if not usable:
            raise error(f"{where} has no signature key for the algorithms {list(self.settings.algorithms)}")
        if len(usable) > MAX_KEYS:
            raise error(f"{where} has more than {MAX_KEYS} keys")
        try:
            keys = load_jwks({"keys": usable})
        except KeySetError as exc:
            raise error(f"{where} is not a valid key set: {str(exc)[:200]}") from None
        if any(key.is_secret for key in keys.values()):
            raise error(f"{where} holds a secret key; an issuer's JWKS holds public keys only")
        return keys

    def _signature_algorithm(self, entry: Mapping[str, object]) -> str | None:
        """The allowed algorithm this key verifies, or None to skip it: keys for encryption (Keycloak
        publishes one) or for algorithms this issuer does not allow are not signature keys for us."""
        use, key_ops = entry.get("use"), entry.get("key_ops")
        if use is not None and use != "sig":
            return None
        if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
            return None
        algorithm = entry.get("alg")
        if algorithm is None:
            # RFC 7517 makes `alg` optional; bind the key to one algorithm here (RFC 8725 §3.1).
            algorithm = _CURVE_ALGORITHMS.get(str(entry.get("crv")))
            if entry.get("kty") == "RSA":
                algorithm = next((a for a in self.settings.algorithms if a[:2] in ("RS", "PS")), None)
        return algorithm if isinstance(algorithm, str) and algorithm in self.settings.algorithms else None
