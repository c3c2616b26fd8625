"""O3/O4: access tokens from a customer's OAuth2 token server (client credentials grant), cached.

Before a webhook goes to a customer's endpoint, the delivery service needs a Bearer token from the
customer's own token server. `TokenCache.token(endpoint, webhook_url)` answers one, fetching it only when
needed. No gRPC and no store here: the caller builds a `TokenEndpoint` from the stored credential.

Client authentication (RFC 6749 §2.3.1, RFC 7523, OIDC Core §9):
- `client_secret_basic`: `Authorization: Basic base64(form-encode(id) ":" form-encode(secret))`;
- `client_secret_post`: `client_id` and `client_secret` in the form;
- `client_secret_jwt`: an HS256 assertion signed with the client secret (Coviu's "JWT");
- `private_key_jwt`: the same claims signed RS256/ES256 with Watchword's private key, `kid` optional.
The assertion's claims are `iss` = `sub` = client id, `aud` = `assertion_audience` or else the webhook URL
(Coviu's default), `iat`, `exp` = `iat` + 300 and a fresh `jti`, and nothing else. Every request carries
`grant_type=client_credentials`, `scope` when set, then the extra form fields (Auth0's `audience`).

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

Outbound HTTP: a per-attempt deadline (`timeout_seconds`, also per operation), the body read by streaming
up to `max_response_bytes` without content decoding, redirects never followed, only http/https, and the
host checked by `NetworkGuard` and then pinned: the request connects to the checked address while
sending the original name as Host and TLS SNI (certificates are verified against the name). Every
request says `Connection: close` and Watchword's own client keeps no idle connections, so a connection
opened for one name is never reused for another behind the same address. A client passed in must
follow the same rule: HTTP/1.1 only, no proxies that resolve names themselves.

Secrets (client secret, private key, assertions, access tokens) never appear in reprs, logs or
exception messages; the token URL appears without its query string.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Literal, Self, get_args
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from watchword.identify.cache import trim_oldest
from watchword.outbound import header_values
from watchword.outbound.network_guard import NetworkGuard, OutboundTokenError, parse_token_url

__all__ = [
    "ASSERTION_LIFETIME_SECONDS",
    "ASSERTION_TYPE",
    "CLIENT_AUTH_METHODS",
    "RESERVED_FORM_FIELDS",
    "ClientAuthMethod",
    "FetchedToken",
    "NetworkGuard",
    "OutboundTokenError",
    "TokenCache",
    "TokenCacheStats",
    "TokenEndpoint",
    "basic_authorization",
    "client_assertion",
]

log = logging.getLogger("watchword.outbound.tokens")

Clock = Callable[[], float]
ClientAuthMethod = Literal[
    "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"
]
CLIENT_AUTH_METHODS: tuple[str, ...] = get_args(ClientAuthMethod)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 300
# Form fields Watchword sets itself; extra fields may not override them (`scope` has its own setting).
RESERVED_FORM_FIELDS = frozenset(
    {"grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type", "scope"}
)
MAX_CACHE_SECONDS = 24 * 3600.0
MAX_RETRY_AFTER_WAIT_SECONDS = 5.0  # longer waits fail at once: a delivery should not hang on them
MAX_BACKOFF_SECONDS = 5.0
# A longer Retry-After is cut to this: a misconfigured server must not stall deliveries for hours.
MAX_RETRY_AFTER_SECONDS = 300.0
MAX_EXPIRES_IN_SECONDS = 365 * 24 * 3600.0  # bounds expires_at, so callers can turn it into a datetime
_SWEEP_ABOVE_ENTRIES = 10_000
MAX_ENTRIES = 20_000  # tokens (and Retry-After waits) kept, oldest dropped first
_PRIVATE_KEY_ALGORITHMS = ("RS256", "ES256")
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")
# RFC 6749 §A.7: `error` is NQSCHAR; bounded here because it ends up in messages.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")


# ---- what the caller describes ----


@dataclass(frozen=True, slots=True)
class TokenEndpoint:
    """One outbound credential's token server and how Watchword authenticates to it. Validated at
    construction: a ValueError names the field, never its value."""

    credential_id: str  # cache key (the outbound credential's id)
    token_url: str
    client_id: str
    auth_method: ClientAuthMethod
    client_secret: str = field(default="", repr=False)  # basic, post and client_secret_jwt
    private_key: object | None = field(default=None, repr=False)  # private_key_jwt: a cryptography key
    assertion_algorithm: str = ""  # "RS256"/"ES256" for private_key_jwt; "" or "HS256" for client_secret_jwt
    assertion_kid: str = ""  # optional `kid` header for private_key_jwt
    assertion_audience: str = ""  # `aud` of the assertion; empty means the webhook URL (Coviu's default)
    scope: str = ""
    extra_form_fields: tuple[tuple[str, str], ...] = ()  # e.g. (("audience", "https://api.example"),)
    version: str = ""  # changes when the credential's secrets rotate: never reuses a token of another

    def __post_init__(self) -> None:
        if not self.credential_id:
            raise ValueError("credential_id is required")
        _check_token_url(self.token_url)
        if not self.client_id:
            raise ValueError("client_id is required")
        if self.auth_method not in CLIENT_AUTH_METHODS:
            raise ValueError(f"auth_method must be one of {list(CLIENT_AUTH_METHODS)}")
        if self.auth_method == "private_key_jwt":
            _check_private_key(self.private_key, self.assertion_algorithm)
        else:
            if not self.client_secret:
                raise ValueError(f"{self.auth_method} needs a client_secret")
            if self.private_key is not None:
                raise ValueError("private_key is only used by private_key_jwt")
            if self.auth_method == "client_secret_jwt" and self.assertion_algorithm not in ("", "HS256"):
                raise ValueError("client_secret_jwt signs with HS256 only")
        _check_form_fields(self.extra_form_fields)

    @property
    def uses_assertion(self) -> bool:
        return self.auth_method in ("client_secret_jwt", "private_key_jwt")

    def audience_for(self, webhook_url: str) -> str:
        """The assertion's `aud`: the configured audience, else the webhook URL; "" without assertion."""
        if not self.uses_assertion:
            return ""
        return self.assertion_audience or webhook_url

    def _settings(self) -> tuple[object, ...]:
        # Non-secret settings in the cache key: changing the URL or scope without a rotation must not
        # keep serving a token obtained with the old ones.
        return (
            self.token_url,
            self.client_id,
            self.auth_method,
            self.assertion_algorithm,
            self.assertion_kid,
            self.scope,
            self.extra_form_fields,
        )


def _check_token_url(url: str) -> None:
    if not isinstance(url, str):
        raise ValueError("token_url is not a valid URL")
    parse_token_url(url)  # the parser the admin API used when the URL was stored


def _check_private_key(key: object, algorithm: str) -> None:
    if algorithm not in _PRIVATE_KEY_ALGORITHMS:
        raise ValueError(f"private_key_jwt needs assertion_algorithm {' or '.join(_PRIVATE_KEY_ALGORITHMS)}")
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("RS256 needs an RSA private key")
        if key.key_size < 2048:
            raise ValueError("RS256 needs an RSA key of at least 2048 bits")
    elif not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("ES256 needs a P-256 private key")


def _check_form_fields(fields: tuple[tuple[str, str], ...]) -> None:
    seen: set[str] = set()
    for pair in fields:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(part, str) for part in pair)):
            raise ValueError("extra_form_fields must be (name, value) pairs of strings")
        name = pair[0]
        if not name:
            raise ValueError("an extra form field needs a name")
        if name in RESERVED_FORM_FIELDS:
            raise ValueError(f"extra form field {name!r} would override a field Watchword sets")
        if name in seen:
            raise ValueError(f"extra form field {name!r} is given twice (RFC 6749 §3.2)")
        seen.add(name)


# ---- what the caller gets ----


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


# ---- client authentication ----


def basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: both parts form-encoded (UTF-8, then percent-encoding) before RFC 7617 Basic, so a
    ':' in the client id survives."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hs256(claims: dict[str, object], secret: str) -> str:
    # Signed here rather than by PyJWT, which warns about HMAC keys under 32 bytes: the customer chose
    # the secret, and a warning per delivery would only be noise.
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret.encode("utf-8"), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def client_assertion(endpoint: TokenEndpoint, audience: str, *, now: float | None = None) -> str:
    """The RFC 7523 client assertion for `endpoint`, with a fresh `jti` each call."""
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": endpoint.client_id,
        "sub": endpoint.client_id,
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + ASSERTION_LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(24),
    }
    if endpoint.auth_method == "client_secret_jwt":
        return _hs256(claims, endpoint.client_secret)
    if endpoint.auth_method != "private_key_jwt":
        raise ValueError(f"{endpoint.auth_method} sends no assertion")
    key = endpoint.private_key
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)  # checked at construction
    headers = {"kid": endpoint.assertion_kid} if endpoint.assertion_kid else None
    return jwt.encode(claims, key, algorithm=endpoint.assertion_algorithm, headers=headers)


def _request_parts(endpoint: TokenEndpoint, audience: str) -> tuple[dict[str, str], bytes]:
    """Headers and form body of one token request (a new assertion, hence a new `jti`, every time)."""
    form: list[tuple[str, str]] = [("grant_type", "client_credentials")]
    if endpoint.scope:
        form.append(("scope", endpoint.scope))
    headers: dict[str, str] = {}
    if endpoint.auth_method == "client_secret_basic":
        headers["Authorization"] = basic_authorization(endpoint.client_id, endpoint.client_secret)
    elif endpoint.auth_method == "client_secret_post":
        form += [("client_id", endpoint.client_id), ("client_secret", endpoint.client_secret)]
    else:
        form += [
            ("client_id", endpoint.client_id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", client_assertion(endpoint, audience)),
        ]
    form += endpoint.extra_form_fields
    return headers, urlencode(form).encode("ascii")


# ---- reading answers ----


def _redacted(url: str) -> str:
    """The URL for messages: no query string, which might carry something secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _invalid(detail: str) -> OutboundTokenError:
    return OutboundTokenError("token_response_invalid", detail, retryable=False)


def _retry_after(value: str | None) -> float | None:
    """Retry-After (RFC 9110 §10.2.3) as seconds from now: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), MAX_RETRY_AFTER_SECONDS))


def _oauth_error_code(body: bytes | None) -> str | None:
    """The `error` of an RFC 6749 §5.2 answer, if it has a sane one. `error_description` is ignored on
    purpose: a server may echo anything there, secrets included."""
    if not body:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    code = document.get("error") if isinstance(document, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


def _expires_in(document: dict[str, object], default: float) -> float:
    value = document.get("expires_in")
    if value is None:
        return default
    if isinstance(value, str) and _DELTA_SECONDS.fullmatch(value.strip()):
        return min(float(value), MAX_EXPIRES_IN_SECONDS)  # some servers send a numeric string
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid("expires_in is not a number")
    if isinstance(value, int):
        value = min(value, int(MAX_EXPIRES_IN_SECONDS))  # before float(): 10**400 would overflow
    if not math.isfinite(value) or value < 0:
        raise _invalid("expires_in is not a finite non-negative number")
    return min(float(value), MAX_EXPIRES_IN_SECONDS)


def _parse_token(body: bytes, default_expires_in: float) -> tuple[str, float]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise _invalid("the token response is not JSON") from None
    if not isinstance(document, dict):
        raise _invalid("the token response is not a JSON object")
    access_token = document.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise _invalid("the token response has no access_token")
    problem = header_values.bearer_token_problem(access_token)
    if problem:
        # It becomes a header value: CR, LF or a space would break (or inject into) the delivery request.
        raise _invalid(f"the access_token has characters a Bearer header cannot carry (it {problem})")
    token_type = document.get("token_type", "Bearer")  # REQUIRED by RFC 6749, but some servers omit it
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        # DPoP, MAC, ...: Watchword sends `Authorization: Bearer`, which would be wrong for them.
        raise _invalid("the token_type is not Bearer")
    return access_token, _expires_in(document, default_expires_in)


# ---- the cache ----


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
        self.guard = guard
        self.stats = TokenCacheStats()
        self._clock = clock
        self._margin = refresh_margin_seconds
        self._default_expires_in = default_expires_in
        self._timeout = timeout_seconds
        self._http_timeout = httpx.Timeout(timeout_seconds)
        self._max_bytes = max_response_bytes
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._forced_floor = forced_refresh_min_interval_seconds
        self._owns_client = client is None
        if client is None:
            client = httpx.AsyncClient(
                timeout=self._http_timeout,
                follow_redirects=False,
                trust_env=False,  # an environment proxy would resolve names itself and undo the pinning
                limits=httpx.Limits(max_keepalive_connections=0),  # see "pinned" in the module docstring
            )
        self._client = client
        self._entries: dict[_Key, _Entry] = {}
        self._inflight: dict[_Key, asyncio.Task[_Entry]] = {}
        self._not_before: dict[_Key, float] = {}  # a long Retry-After, per key
        self._closed = False

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
        audience = endpoint.audience_for(webhook_url)
        key = _Key(endpoint.credential_id, endpoint.version, endpoint._settings(), audience)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            if force_refresh and now - entry.fetched_at >= self._forced_floor:
                del self._entries[key]
            elif now < entry.refresh_at:
                self.stats.hits += 1
                return entry.token
        task = self._inflight.get(key)
        if task is None:
            not_before = self._not_before.get(key)
            if not_before is not None:
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
        if self._owns_client:
            await self._client.aclose()

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
            _redacted(endpoint.token_url),
            exc.reason,
            detail,
        )
        return OutboundTokenError(exc.reason, detail, retryable=exc.retryable, retry_after=exc.retry_after)

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
        if len(self._entries) > _SWEEP_ABOVE_ENTRIES:
            now = self._clock()
            for other in [k for k, e in self._entries.items() if e.token.expires_at <= now]:
                del self._entries[other]
        trim_oldest(self._entries, MAX_ENTRIES)  # unexpired tokens of many audiences: still bounded
        return entry

    # ---- one HTTP attempt ----

    async def _attempt(self, endpoint: TokenEndpoint, audience: str) -> tuple[str, float]:
        try:
            async with asyncio.timeout(self._timeout):  # the whole attempt, even against a slow drip
                return await self._request(endpoint, audience)
        except TimeoutError:
            raise OutboundTokenError(
                "token_server_timeout", f"no answer within {self._timeout:g} s", retryable=True
            ) from None

    async def _request(self, endpoint: TokenEndpoint, audience: str) -> tuple[str, float]:
        url = httpx.URL(endpoint.token_url)
        addresses = await self.guard.resolve(url)
        headers, body = _request_parts(endpoint, audience)
        headers |= {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "Content-Type": "application/x-www-form-urlencoded",
            "Connection": "close",
        }
        refused: httpx.ConnectError | None = None
        for target, pinning_headers, extensions in _pinned_targets(url, addresses):
            try:
                return await self._post(target, headers | pinning_headers, body, extensions, endpoint)
            except httpx.ConnectError as exc:
                refused = exc  # try the next checked address, as a resolving connect would
            except httpx.TimeoutException:
                raise OutboundTokenError(
                    "token_server_timeout", f"no answer within {self._timeout:g} s", retryable=True
                ) from None
            except httpx.TransportError as exc:
                raise OutboundTokenError(
                    "token_server_unreachable",
                    f"the connection to the token server failed ({type(exc).__name__})",
                    retryable=True,
                ) from None
        raise OutboundTokenError(
            "token_server_unreachable",
            f"cannot connect to {_redacted(endpoint.token_url)} ({type(refused).__name__})",
            retryable=True,
        )

    async def _post(
        self,
        target: httpx.URL,
        headers: dict[str, str],
        body: bytes,
        extensions: dict[str, object],
        endpoint: TokenEndpoint,
    ) -> tuple[str, float]:
        self.stats.http_requests += 1
        async with self._client.stream(
            "POST",
            target,
            content=body,
            headers=headers,
            timeout=self._http_timeout,
            follow_redirects=False,
            extensions=extensions,
        ) as response:
            status = response.status_code
            if 300 <= status < 400:
                # Never followed: the form carries the client's credentials, and the guard checked only
                # this host.
                raise OutboundTokenError(
                    "redirect_refused",
                    f"{_redacted(endpoint.token_url)} answered HTTP {status}; redirects are not followed",
                    retryable=False,
                )
            payload, problem = await self._read_bounded(response)
        where = _redacted(endpoint.token_url)
        if status == 200:
            if payload is None:
                raise _invalid(f"the answer of {where} {problem}")
            return _parse_token(payload, self._default_expires_in)
        if status == 429 or status >= 500:
            raise OutboundTokenError(
                "token_server_error",
                f"{where} answered HTTP {status}",
                retryable=True,
                retry_after=_retry_after(response.headers.get("retry-after")),
            )
        code = _oauth_error_code(payload)
        if 400 <= status < 500:
            if status == 401 or code == "invalid_client":
                raise OutboundTokenError(
                    "token_server_rejected_client",
                    f"{where} refused the client credentials (HTTP {status}, {code or 'no error code'})",
                    retryable=False,
                )
            raise OutboundTokenError(
                "token_server_refused",
                f"{where} refused the request (HTTP {status}, {code or 'no error code'})",
                retryable=False,
            )
        raise _invalid(f"{where} answered HTTP {status} instead of 200")

    async def _read_bounded(self, response: httpx.Response) -> tuple[bytes | None, str]:
        """The raw body, or None and why not. Raw bytes only: a compressed body could expand far beyond
        the bound while being decoded."""
        if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
            return None, "came compressed although identity was asked for"
        too_large = f"is larger than {self._max_bytes} bytes"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            return None, too_large
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self._max_bytes:
                return None, too_large
        return bytes(body), ""


def _pinned_targets(
    url: httpx.URL, addresses: tuple[str, ...]
) -> list[tuple[httpx.URL, dict[str, str], dict[str, object]]]:
    """Where to connect: each checked address in turn, with the original name as Host header and SNI
    (httpx verifies the certificate against the SNI name). By name only when nothing was resolved (an
    allowed host) or the host is already an address."""
    host = url.raw_host.decode("ascii")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(url, {}, {})]
    pinned = [address for address in addresses if "%" not in address]  # a zoned address has no URL form
    if not pinned:
        return [(url, {}, {})]
    headers = {"Host": url.netloc.decode("ascii")}
    extensions: dict[str, object] = {"sni_hostname": host} if url.scheme == "https" else {}
    return [(url.copy_with(host=address), headers, extensions) for address in pinned]
