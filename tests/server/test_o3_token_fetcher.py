"""O3/O4: access tokens from a customer's token server, fetched, cached and shared, against a real HTTP
token server on 127.0.0.1 (tests/support/token_server.py) that checks each client authentication itself.

Every network wait is bounded (timeouts of at most 2 s, backoff of 10 ms), so the file runs in seconds.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from watchword.domain import ClientAuthMethod
from watchword.outbound.client_auth import ASSERTION_TYPE, RESERVED_FORM_FIELDS, basic_authorization
from watchword.outbound.network_guard import NetworkGuard, is_forbidden_address
from watchword.outbound.token_cache import FetchedToken, OutboundTokenError, TokenCache
from watchword.outbound.token_endpoint import TokenEndpoint

from support.token_server import Client, Reply, TokenServer, make_certificate

WEBHOOK_URL = "https://hooks.customer.example/watchword/events"
OTHER_WEBHOOK_URL = "https://hooks.customer.example/other"
JWT_SECRET = "a-shared-secret-of-at-least-32-bytes-for-hs256!"
LOCAL = NetworkGuard(allow_private=True)
PRIVATE_KEY_JWT = ClientAuthMethod.PRIVATE_KEY_JWT  # the token server runs on 127.0.0.1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def token_server() -> Any:
    with TokenServer() as running:
        yield running


@pytest.fixture
async def make_cache() -> AsyncIterator[Callable[..., TokenCache]]:
    """TokenCaches with small timeouts and backoff, closed after the test."""
    made: list[TokenCache] = []

    def make(client: httpx.AsyncClient | None = None, **options: Any) -> TokenCache:
        options = {"guard": LOCAL, "timeout_seconds": 2.0, "backoff_seconds": 0.01} | options
        cache = TokenCache(client, **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


def secret_client(server: TokenServer, client_id: str = "watchword", secret: str = "s3cret") -> Client:
    return server.register(Client(client_id, secret=secret, audience=WEBHOOK_URL))


def endpoint_for(server: TokenServer, client: Client, method: str, **fields: Any) -> TokenEndpoint:
    """An endpoint for `method`, named as RFC 7591 names it (as the token server reports it)."""
    fields = {
        "credential_id": "oc_1",
        "token_url": server.token_url,
        "client_id": client.client_id,
        "auth_method": ClientAuthMethod[method.upper()],
        "client_secret": client.secret,
    } | fields
    return TokenEndpoint(**fields)


async def failure(cache: TokenCache, endpoint: TokenEndpoint, **options: Any) -> OutboundTokenError:
    with pytest.raises(OutboundTokenError) as caught:
        await cache.token(endpoint, WEBHOOK_URL, **options)
    return caught.value


# ---- client authentication, as the server saw it ----


async def test_o3_client_secret_basic_form_encodes_id_and_secret(token_server, make_cache):
    client = secret_client(token_server, client_id="cli:ent+1 %é", secret="s3cr:et+ %€")
    token = await make_cache().token(endpoint_for(token_server, client, "client_secret_basic"), WEBHOOK_URL)

    (seen,) = token_server.requests
    assert seen.problem is None
    assert seen.method == "client_secret_basic"
    assert seen.client_id == "cli:ent+1 %é"
    # RFC 6749 §2.3.1: each half form-encoded before Basic; written out by hand, not by the code under test.
    encoded = "cli%3Aent%2B1+%25%C3%A9:s3cr%3Aet%2B+%25%E2%82%AC"
    assert seen.headers["authorization"] == "Basic " + base64.b64encode(encoded.encode()).decode()
    assert seen.form == {"grant_type": "client_credentials"}  # no secret in the body
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token.access_token.startswith("at-1-")
    assert token.token_type == "Bearer"


async def test_o3_client_secret_post_sends_id_and_secret_in_the_form(token_server, make_cache):
    client = secret_client(token_server, secret="p:ss+w %rd")
    await make_cache().token(endpoint_for(token_server, client, "client_secret_post"), WEBHOOK_URL)

    (seen,) = token_server.requests
    assert seen.problem is None
    assert seen.method == "client_secret_post"
    assert seen.form_pairs == [
        ("grant_type", "client_credentials"),
        ("client_id", "watchword"),
        ("client_secret", "p:ss+w %rd"),
    ]
    assert "authorization" not in seen.headers


async def test_o3_client_secret_jwt_claims_exactly_with_the_webhook_url_as_audience(token_server, make_cache):
    client = secret_client(token_server, secret=JWT_SECRET)
    before = int(time.time())
    await make_cache().token(endpoint_for(token_server, client, "client_secret_jwt"), WEBHOOK_URL)

    (seen,) = token_server.requests
    assert seen.problem is None
    assert seen.method == "client_secret_jwt"
    assert seen.client_id == "watchword"
    assert seen.assertion_header == {"alg": "HS256", "typ": "JWT"}
    claims = seen.claims
    assert claims is not None
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "jti"}
    assert claims["iss"] == claims["sub"] == "watchword"
    assert claims["aud"] == WEBHOOK_URL
    assert before <= claims["iat"] <= time.time() + 1
    assert claims["exp"] - claims["iat"] == 300
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16
    assert set(seen.form) == {"grant_type", "client_id", "client_assertion_type", "client_assertion"}
    assert seen.form["client_assertion_type"] == ASSERTION_TYPE
    assert JWT_SECRET not in str(seen.form)


async def test_o3_client_secret_jwt_audience_can_be_the_token_url(token_server, make_cache):
    client = token_server.register(Client("watchword", secret=JWT_SECRET, audience=token_server.token_url))
    endpoint = endpoint_for(
        token_server, client, "client_secret_jwt", assertion_audience=token_server.token_url
    )
    await make_cache().token(endpoint, WEBHOOK_URL)

    (seen,) = token_server.requests
    assert seen.problem is None
    assert seen.claims is not None
    assert seen.claims["aud"] == token_server.token_url


async def test_o3_every_assertion_has_a_fresh_jti(token_server, make_cache):
    client = secret_client(token_server, secret=JWT_SECRET)
    cache = make_cache()
    endpoint = endpoint_for(token_server, client, "client_secret_jwt")
    for _ in range(3):
        await cache.token(endpoint, WEBHOOK_URL)
        cache.drop("oc_1")

    jtis = [seen.claims["jti"] for seen in token_server.requests if seen.claims]
    assert len(jtis) == 3
    assert len(set(jtis)) == 3
    assert all(seen.problem is None for seen in token_server.requests)  # the server checks it too


@pytest.mark.parametrize(("algorithm", "kid"), [("RS256", None), ("ES256", "oc_1"), ("RS256", "key-2")])
async def test_o4_private_key_jwt(token_server, make_cache, algorithm, kid):
    if algorithm == "RS256":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    client = token_server.register(
        Client(
            "watchword-pk",
            public_key=private.public_key(),
            algorithm=algorithm,
            kid=kid,
            audience=WEBHOOK_URL,
        )
    )
    endpoint = TokenEndpoint(
        credential_id="oc_pk",
        token_url=token_server.token_url,
        client_id=client.client_id,
        auth_method=ClientAuthMethod.PRIVATE_KEY_JWT,
        private_key=private,
        assertion_algorithm=algorithm,
        assertion_kid=kid or "",
    )
    token = await make_cache().token(endpoint, WEBHOOK_URL)

    (seen,) = token_server.requests
    assert seen.problem is None
    assert seen.method == "private_key_jwt"
    assert seen.client_id == "watchword-pk"
    assert seen.assertion_header is not None
    assert seen.assertion_header["alg"] == algorithm
    assert seen.assertion_header.get("kid") == kid
    claims = seen.claims
    assert claims is not None
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "jti"}
    assert claims["iss"] == claims["sub"] == "watchword-pk"
    assert claims["aud"] == WEBHOOK_URL
    assert claims["exp"] - claims["iat"] == 300
    assert token.access_token


async def test_o3_wrong_secret_is_refused_by_the_server_and_not_retried(token_server, make_cache):
    client = secret_client(token_server)
    for method in ("client_secret_basic", "client_secret_post"):
        endpoint = endpoint_for(token_server, client, method, client_secret="wrong", credential_id=method)
        error = await failure(make_cache(), endpoint)
        assert error.reason == "token_server_rejected_client"
        assert not error.retryable
    assert token_server.request_count == 2


async def test_o4_scope_and_extra_form_fields_are_sent(token_server, make_cache):
    client = secret_client(token_server)
    endpoint = endpoint_for(
        token_server,
        client,
        "client_secret_post",
        scope="events:write read",
        extra_form_fields=(("audience", "https://api.example"), ("organization", "org_123")),
    )
    await make_cache().token(endpoint, WEBHOOK_URL)

    (seen,) = token_server.requests
    assert seen.problem is None
    assert seen.form == {
        "grant_type": "client_credentials",
        "scope": "events:write read",
        "client_id": "watchword",
        "client_secret": "s3cret",
        "audience": "https://api.example",
        "organization": "org_123",
    }


# ---- what a TokenEndpoint refuses ----


@pytest.mark.parametrize("name", sorted(RESERVED_FORM_FIELDS))
def test_o4_extra_form_fields_cannot_override_what_watchword_sets(name):
    with pytest.raises(ValueError, match=name):
        TokenEndpoint(
            "oc_1",
            "https://token.example/t",
            "id",
            ClientAuthMethod.CLIENT_SECRET_POST,
            client_secret="secret-value",
            extra_form_fields=((name, "x"),),
        )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"extra_form_fields": (("audience", "a"), ("audience", "b"))}, "twice"),
        ({"extra_form_fields": (("", "a"),)}, "name"),
        ({"token_url": "ftp://token.example/t"}, "http or https"),
        ({"token_url": "/relative"}, "http or https"),
        ({"token_url": "https://user:pw@token.example/t"}, "user information"),
        ({"client_secret": ""}, "client_secret"),
        ({"client_id": ""}, "client_id"),
        ({"credential_id": ""}, "credential_id"),
        ({"auth_method": "tls_client_auth"}, "auth_method"),
        ({"auth_method": ClientAuthMethod.CLIENT_SECRET_JWT, "assertion_algorithm": "HS512"}, "HS256"),
        (
            {
                "auth_method": ClientAuthMethod.PRIVATE_KEY_JWT,
                "client_secret": "",
                "assertion_algorithm": "RS256",
            },
            "RSA",
        ),
        (
            {
                "auth_method": ClientAuthMethod.PRIVATE_KEY_JWT,
                "client_secret": "",
                "assertion_algorithm": "PS256",
            },
            "RS256",
        ),
        (
            {
                "auth_method": ClientAuthMethod.PRIVATE_KEY_JWT,
                "client_secret": "",
                "assertion_algorithm": "ES256",
                "private_key": ec.generate_private_key(ec.SECP384R1()),
            },
            "P-256",
        ),
    ],
)
def test_o3_endpoint_is_validated_without_echoing_secrets(fields, message):
    arguments = {
        "credential_id": "oc_1",
        "token_url": "https://token.example/t",
        "client_id": "id",
        "auth_method": ClientAuthMethod.CLIENT_SECRET_POST,
        "client_secret": "secret-value",
    } | fields
    with pytest.raises(ValueError, match=message) as caught:
        TokenEndpoint(**arguments)
    assert "secret-value" not in str(caught.value)
    assert "pw" not in str(caught.value)


def test_o3_secrets_stay_out_of_reprs():
    key = ec.generate_private_key(ec.SECP256R1())
    endpoint = TokenEndpoint(
        "oc_1",
        "https://token.example/t",
        "id",
        ClientAuthMethod.PRIVATE_KEY_JWT,
        private_key=key,
        assertion_algorithm="ES256",
    )
    post = TokenEndpoint(
        "oc_2", "https://token.example/t", "id", ClientAuthMethod.CLIENT_SECRET_POST, client_secret="hunter2"
    )
    token = FetchedToken("the-access-token", "Bearer", 1.0)
    assert "hunter2" not in repr(post)
    assert "client_secret=" not in repr(post)
    assert "private_key=" not in repr(endpoint)
    assert "EllipticCurve" not in repr(endpoint)
    assert "the-access-token" not in repr(token)
    assert "the-access-token" not in str(token)


# ---- caching ----


async def test_o3_token_is_reused_until_shortly_before_it_expires(token_server, make_cache):
    clock = FakeClock()
    cache = make_cache(clock=clock, refresh_margin_seconds=30.0)
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    first = await cache.token(endpoint, WEBHOOK_URL)
    assert first.expires_at == 1000.0 + 3600

    clock.advance(3569.9)
    assert await cache.token(endpoint, WEBHOOK_URL) == first
    assert token_server.request_count == 1
    assert cache.stats.hits == 1

    clock.advance(0.2)  # inside the 30 s margin now
    second = await cache.token(endpoint, WEBHOOK_URL)
    assert second.access_token != first.access_token
    assert token_server.request_count == 2


@pytest.mark.parametrize(("default", "reused_until"), [(None, 270.0), (120.0, 90.0)])
async def test_o3_missing_expires_in_gets_the_default(token_server, make_cache, default, reused_until):
    token_server.set(expires_in=None)
    clock = FakeClock()
    options = {} if default is None else {"default_expires_in": default}
    cache = make_cache(clock=clock, **options)
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    first = await cache.token(endpoint, WEBHOOK_URL)
    assert first.expires_at == 1000.0 + (default or 300.0)  # 300 s: the documented default

    clock.advance(reused_until - 0.1)
    assert await cache.token(endpoint, WEBHOOK_URL) == first
    clock.advance(0.2)
    assert await cache.token(endpoint, WEBHOOK_URL) != first
    assert token_server.request_count == 2


async def test_o3_short_lived_token_is_reused_for_half_its_life(token_server, make_cache):
    token_server.set(expires_in=20)
    clock = FakeClock()
    cache = make_cache(clock=clock)
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    first = await cache.token(endpoint, WEBHOOK_URL)
    clock.advance(9.9)
    assert await cache.token(endpoint, WEBHOOK_URL) == first
    clock.advance(0.2)
    assert await cache.token(endpoint, WEBHOOK_URL) != first


async def test_o3_numeric_string_expires_in_is_accepted(token_server, make_cache):
    token_server.set(expires_in="600")
    clock = FakeClock()
    token = await make_cache(clock=clock).token(
        endpoint_for(token_server, secret_client(token_server), "client_secret_basic"), WEBHOOK_URL
    )
    assert token.expires_at == 1600.0


async def test_o3_thousand_concurrent_calls_cause_one_request(token_server, make_cache):
    token_server.set(delay_seconds=0.2)  # every caller arrives while the one fetch runs
    cache = make_cache()
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    tokens = await asyncio.gather(*(cache.token(endpoint, WEBHOOK_URL) for _ in range(1000)))

    assert token_server.request_count == 1
    assert len({token.access_token for token in tokens}) == 1
    assert cache.stats.fetches == 1
    assert cache.stats.http_requests == 1


async def test_o3_a_cancelled_caller_does_not_cancel_the_shared_fetch(token_server, make_cache):
    token_server.set(delay_seconds=0.2)
    cache = make_cache()
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    impatient = asyncio.create_task(cache.token(endpoint, WEBHOOK_URL))
    patient = asyncio.create_task(cache.token(endpoint, WEBHOOK_URL))
    await asyncio.sleep(0.05)
    impatient.cancel()
    token = await patient
    assert token.access_token
    assert token_server.request_count == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_o3_drop_fetches_anew(token_server, make_cache):
    cache = make_cache()
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    first = await cache.token(endpoint, WEBHOOK_URL)
    cache.drop("oc_1")
    second = await cache.token(endpoint, WEBHOOK_URL)
    assert second.access_token != first.access_token
    assert token_server.request_count == 2
    cache.drop("unknown")  # harmless


async def test_o3_force_refresh_fetches_anew_once_per_burst_of_401s(token_server, make_cache):
    clock = FakeClock()
    cache = make_cache(clock=clock, forced_refresh_min_interval_seconds=5.0)
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    first = await cache.token(endpoint, WEBHOOK_URL)
    clock.advance(60)

    token_server.set(delay_seconds=0.1)
    refreshed = await asyncio.gather(
        *(cache.token(endpoint, WEBHOOK_URL, force_refresh=True) for _ in range(200))
    )
    assert {token.access_token for token in refreshed} != {first.access_token}
    assert len({token.access_token for token in refreshed}) == 1
    assert token_server.request_count == 2  # 200 deliveries got a 401: one new token

    # Another 401 right after: the token is brand new, so the endpoint is at fault, not the token.
    assert await cache.token(endpoint, WEBHOOK_URL, force_refresh=True) == refreshed[0]
    assert token_server.request_count == 2
    clock.advance(5)
    assert await cache.token(endpoint, WEBHOOK_URL, force_refresh=True) != refreshed[0]
    assert token_server.request_count == 3


async def test_o3_new_version_never_reuses_the_old_token(token_server, make_cache):
    cache = make_cache()
    client = secret_client(token_server)
    old = await cache.token(
        endpoint_for(token_server, client, "client_secret_basic", version="v1"), WEBHOOK_URL
    )
    new = await cache.token(
        endpoint_for(token_server, client, "client_secret_basic", version="v2"), WEBHOOK_URL
    )
    assert new.access_token != old.access_token
    assert token_server.request_count == 2


async def test_o3_assertion_audience_is_part_of_the_cache_key(token_server, make_cache):
    cache = make_cache()
    client = token_server.register(
        Client("jwt-client", secret=JWT_SECRET, audience=(WEBHOOK_URL, OTHER_WEBHOOK_URL))
    )
    jwt_endpoint = endpoint_for(token_server, client, "client_secret_jwt", credential_id="oc_jwt")
    await cache.token(jwt_endpoint, WEBHOOK_URL)
    await cache.token(jwt_endpoint, OTHER_WEBHOOK_URL)
    await cache.token(jwt_endpoint, WEBHOOK_URL)
    assert [seen.claims["aud"] for seen in token_server.requests if seen.claims] == [
        WEBHOOK_URL,
        OTHER_WEBHOOK_URL,
    ]
    # Without an assertion the webhook URL plays no part: one token for every URL.
    basic = endpoint_for(
        token_server, secret_client(token_server), "client_secret_basic", credential_id="oc_b"
    )
    await cache.token(basic, WEBHOOK_URL)
    await cache.token(basic, OTHER_WEBHOOK_URL)
    assert token_server.request_count == 3


# ---- failures: classified, retried when that can help ----


async def test_o3_a_500_then_a_token_succeeds_after_one_retry(token_server, make_cache):
    token_server.then(Reply.json(500, {"error": "server_error"}))
    cache = make_cache()
    token = await cache.token(
        endpoint_for(token_server, secret_client(token_server), "client_secret_basic"), WEBHOOK_URL
    )
    assert token.access_token
    assert token_server.request_count == 2


async def test_o3_persistent_500_is_retryable_after_max_attempts(token_server, make_cache):
    token_server.always(Reply.json(503, {"error": "temporarily_unavailable"}))
    cache = make_cache(max_attempts=3)
    started = time.monotonic()
    error = await failure(
        cache, endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    )
    assert error.reason == "token_server_error"
    assert error.retryable
    assert "3 attempts" in str(error)
    assert "503" in str(error)
    assert token_server.request_count == 3
    assert time.monotonic() - started < 2


async def test_o3_timeouts_are_retryable_after_max_attempts(token_server, make_cache):
    token_server.set(delay_seconds=1.5)
    cache = make_cache(timeout_seconds=0.2, max_attempts=2)
    started = time.monotonic()
    error = await failure(
        cache, endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    )
    assert error.reason == "token_server_timeout"
    assert error.retryable
    assert token_server.request_count == 2
    assert time.monotonic() - started < 1.2


async def test_o3_unreachable_token_server_is_retryable(make_cache):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = TokenEndpoint(
        "oc_1",
        f"http://127.0.0.1:{port}/token",
        "id",
        ClientAuthMethod.CLIENT_SECRET_BASIC,
        client_secret="s",
    )
    cache = make_cache(max_attempts=3)
    started = time.monotonic()
    error = await failure(cache, endpoint)
    assert error.reason == "token_server_unreachable"
    assert error.retryable
    assert cache.stats.http_requests == 3
    assert time.monotonic() - started < 2


async def test_o3_name_that_does_not_resolve_is_unreachable_and_retryable(make_cache, monkeypatch):
    async def no_such_name(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_name)
    endpoint = TokenEndpoint(
        "oc_1", "https://token.customer.test/t", "id", ClientAuthMethod.CLIENT_SECRET_BASIC, client_secret="s"
    )
    cache = make_cache(max_attempts=2)
    error = await failure(cache, endpoint)
    assert error.reason == "token_server_unreachable"
    assert error.retryable
    assert cache.stats.http_requests == 0


async def test_o3_dropped_connection_is_retryable(token_server, make_cache):
    token_server.always(Reply.dropped())
    error = await failure(
        make_cache(), endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    )
    assert error.reason == "token_server_unreachable"
    assert error.retryable
    assert token_server.request_count == 3


async def test_o3_429_retry_after_is_waited_for(token_server, make_cache):
    token_server.then(Reply.json(429, {"error": "slow_down"}, ("Retry-After", "1")))
    cache = make_cache()
    started = time.monotonic()
    token = await cache.token(
        endpoint_for(token_server, secret_client(token_server), "client_secret_basic"), WEBHOOK_URL
    )
    assert token.access_token
    assert token_server.request_count == 2
    assert time.monotonic() - started >= 0.95


async def test_o3_long_retry_after_fails_at_once_and_holds_later_calls(token_server, make_cache):
    token_server.always(Reply.json(429, {"error": "slow_down"}, ("Retry-After", "120")))
    clock = FakeClock()
    cache = make_cache(clock=clock)
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    error = await failure(cache, endpoint)
    assert error.reason == "token_server_error"
    assert error.retryable
    assert error.retry_after == 120
    assert token_server.request_count == 1

    clock.advance(100)
    held = await failure(cache, endpoint)
    assert held.retryable
    assert held.retry_after == pytest.approx(20)
    assert token_server.request_count == 1  # the server asked for quiet, and got it

    token_server.always(None)
    clock.advance(21)
    assert (await cache.token(endpoint, WEBHOOK_URL)).access_token
    assert token_server.request_count == 2


async def test_o3_retry_after_is_read_as_a_date_and_capped(token_server, make_cache):
    token_server.then(Reply.json(503, {}, ("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")))  # past
    cache = make_cache()
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    assert (await cache.token(endpoint, WEBHOOK_URL)).access_token
    assert token_server.request_count == 2

    token_server.always(Reply.json(429, {}, ("Retry-After", "99999999")))
    cache.drop("oc_1")
    error = await failure(cache, endpoint)
    assert error.retry_after == 300  # a server cannot stall deliveries for days


async def test_o3_absurd_expires_in_is_bounded(token_server, make_cache):
    token_server.set(expires_in=10**400)
    clock = FakeClock()
    cache = make_cache(clock=clock)
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    token = await cache.token(endpoint, WEBHOOK_URL)
    assert token.expires_at == 1000.0 + 365 * 24 * 3600
    clock.advance(24 * 3600 - 1)
    assert await cache.token(endpoint, WEBHOOK_URL) == token
    clock.advance(2)  # reused for a day at most
    assert await cache.token(endpoint, WEBHOOK_URL) != token
    assert token_server.request_count == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply.oauth_error(400, "invalid_client"),
        Reply.oauth_error(401, "invalid_client"),
        Reply(401, b""),
        Reply.oauth_error(403, "invalid_client"),
    ],
    ids=["400-invalid_client", "401-invalid_client", "401-no-body", "403-invalid_client"],
)
async def test_o3_rejected_client_is_not_retried(token_server, make_cache, reply):
    token_server.always(reply)
    error = await failure(
        make_cache(), endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    )
    assert error.reason == "token_server_rejected_client"
    assert not error.retryable
    assert token_server.request_count == 1


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply.oauth_error(400, "invalid_scope"), "invalid_scope"),
        (Reply.oauth_error(400, "unauthorized_client"), "unauthorized_client"),
        (Reply.json(404, {"detail": "not found"}), "no error code"),
    ],
)
async def test_o3_other_4xx_are_refused_with_the_oauth_error_code(token_server, make_cache, reply, code):
    token_server.always(reply)
    error = await failure(
        make_cache(), endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    )
    assert error.reason == "token_server_refused"
    assert not error.retryable
    assert code in str(error)
    assert token_server.request_count == 1


async def test_o3_secrets_stay_out_of_messages_and_logs(token_server, make_cache, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "very-secret-client-secret-value"
    client = secret_client(token_server, secret=secret)
    token_server.then(Reply.oauth_error(400, "invalid_scope", description=f"echoing {secret}"))
    endpoint = endpoint_for(
        token_server, client, "client_secret_post", token_url=token_server.token_url + "?k=v1"
    )
    error = await failure(make_cache(), endpoint)
    token = await make_cache().token(endpoint, WEBHOOK_URL)

    assert secret not in str(error)
    assert "echoing" not in str(error)
    assert "k=v1" not in str(error)
    assert secret not in caplog.text
    assert token.access_token not in caplog.text
    assert "invalid_scope" in caplog.text  # the failure is logged, safely


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_o3_redirects_are_refused(token_server, make_cache, status):
    with TokenServer() as elsewhere:
        token_server.always(Reply.redirect(elsewhere.token_url, status))
        error = await failure(
            make_cache(), endpoint_for(token_server, secret_client(token_server), "client_secret_post")
        )
        assert error.reason == "redirect_refused"
        assert not error.retryable
        assert token_server.request_count == 1
        assert elsewhere.request_count == 0


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "until-close"])
async def test_o3_oversized_body_is_refused(token_server, make_cache, send_length):
    token_server.always(Reply.huge(200_000, send_length=send_length))
    error = await failure(
        make_cache(max_response_bytes=65536),
        endpoint_for(token_server, secret_client(token_server), "client_secret_basic"),
    )
    assert error.reason == "token_response_invalid"
    assert not error.retryable
    assert "65536 bytes" in str(error)
    assert token_server.request_count == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b"<html>maintenance</html>"),
        Reply.json(200, ["access_token"]),
        Reply.json(200, {"token_type": "Bearer", "expires_in": 60}),
        Reply.json(200, {"access_token": "", "token_type": "Bearer"}),
        Reply.json(200, {"access_token": "t", "token_type": "mac"}),
        Reply.json(200, {"access_token": "t", "token_type": "DPoP"}),
        Reply.json(200, {"access_token": "t\r\nX-Injected: 1", "token_type": "Bearer"}),
        Reply.json(200, {"access_token": "t", "token_type": "Bearer", "expires_in": -5}),
        Reply.json(200, {"access_token": "t", "token_type": "Bearer", "expires_in": "soon"}),
        Reply.json(200, {"access_token": "t", "token_type": "Bearer", "expires_in": True}),
        Reply(200, b'{"access_token": "t"}', (("Content-Encoding", "gzip"),)),
        Reply.json(201, {"access_token": "t", "token_type": "Bearer"}),
    ],
    ids=[
        "not-json",
        "array",
        "no-access-token",
        "empty-access-token",
        "mac",
        "dpop",
        "header-injection",
        "negative-expires-in",
        "word-expires-in",
        "bool-expires-in",
        "compressed",
        "201",
    ],
)
async def test_o3_unusable_answers_are_invalid(token_server, make_cache, reply):
    token_server.always(reply)
    error = await failure(
        make_cache(), endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    )
    assert error.reason == "token_response_invalid"
    assert not error.retryable
    assert token_server.request_count == 1


@pytest.mark.parametrize(
    "token", ["t\r\nX-Injected: 1", "t\nX: 1", "t\x00", "t t", " t", "t\u2028", "t\u00e9"]
)
@pytest.mark.parametrize("method", ["client_secret_basic", "private_key_jwt"])
async def test_o3_o4_an_access_token_a_header_cannot_carry_is_a_non_retryable_failure(
    token_server, make_cache, method, token
):
    """The token becomes `Authorization: Bearer <token>`: checked by the rule SignOutbound checks stored
    bearer tokens with (`header_values`), for O3 and O4 alike; the message says why, never the token."""
    token_server.always(Reply.json(200, {"access_token": token, "token_type": "Bearer"}))
    if method == "private_key_jwt":
        private = ec.generate_private_key(ec.SECP256R1())
        client = token_server.register(
            Client("watchword-pk", public_key=private.public_key(), algorithm="ES256", audience=WEBHOOK_URL)
        )
        endpoint = TokenEndpoint(
            credential_id="oc_pk",
            token_url=token_server.token_url,
            client_id=client.client_id,
            auth_method=ClientAuthMethod.PRIVATE_KEY_JWT,
            private_key=private,
            assertion_algorithm="ES256",
        )
    else:
        endpoint = endpoint_for(token_server, secret_client(token_server), method)
    error = await failure(make_cache(), endpoint)
    assert (error.reason, error.retryable) == ("token_response_invalid", False)
    assert "Bearer header cannot carry" in str(error)
    assert "X-Injected" not in str(error)
    assert token_server.request_count == 1, "not retried: asking again gets the same answer"


async def test_o3_lowercase_bearer_and_missing_token_type_are_accepted(token_server, make_cache):
    token_server.then(Reply.json(200, {"access_token": "t1", "token_type": "bearer"}))
    cache = make_cache()
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    assert (await cache.token(endpoint, WEBHOOK_URL)).token_type == "Bearer"
    cache.drop("oc_1")
    token_server.then(Reply.json(200, {"access_token": "t2"}))
    assert (await cache.token(endpoint, WEBHOOK_URL)).access_token == "t2"


async def test_o3_closed_cache_refuses_work(token_server):
    cache = TokenCache(guard=LOCAL)
    await cache.close()
    with pytest.raises(RuntimeError):
        await cache.token(
            endpoint_for(token_server, secret_client(token_server), "client_secret_basic"), WEBHOOK_URL
        )


# ---- the network guard ----

FORBIDDEN_URLS = [
    "http://127.0.0.1/token",
    "http://10.0.0.1/token",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/token",
    "http://[::ffff:127.0.0.1]/token",
    "http://localhost/token",
    "http://0.0.0.0/token",
    "http://[::]/token",
    "http://192.168.1.1/token",
    "http://172.16.0.1/token",
    "http://100.64.0.1/token",
    "http://224.0.0.1/token",
    "http://240.0.0.1/token",
    "http://[fe80::1]/token",
    "http://[fc00::1]/token",
    "http://[ff02::1]/token",
    "http://[64:ff9b::a00:1]/token",  # NAT64 to 10.0.0.1
    "http://[2002:a00:1::]/token",  # 6to4 from 10.0.0.1
    "http://2130706433/token",  # 127.0.0.1 as one number
    "http://127.1/token",
]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
async def test_o3_guard_refuses_local_and_private_addresses_by_default(url):
    with pytest.raises(OutboundTokenError) as caught:
        await NetworkGuard().check(url)
    assert caught.value.reason == "token_url_forbidden"
    assert not caught.value.retryable


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
async def test_o3_guard_allows_them_with_allow_private(url):
    await NetworkGuard(allow_private=True).check(url)


@pytest.mark.parametrize("url", ["http://93.184.216.34/token", "https://[2606:4700:4700::1111]/token"])
async def test_o3_guard_allows_public_addresses(url):
    await NetworkGuard().check(url)


@pytest.mark.parametrize("url", ["ftp://token.example/t", "file:///etc/passwd", "gopher://127.0.0.1/"])
async def test_o3_guard_refuses_other_schemes(url):
    with pytest.raises(OutboundTokenError) as caught:
        await NetworkGuard(allow_private=True).check(url)
    assert caught.value.reason == "token_url_forbidden"


async def test_o3_guard_allowed_hosts_open_only_those_hosts():
    guard = NetworkGuard(allowed_hosts=frozenset({"LocalHost"}))
    await guard.check("http://localhost:8080/token")
    await guard.check("http://localhost./token")
    with pytest.raises(OutboundTokenError):
        await guard.check("http://127.0.0.1:8080/token")


async def test_o3_guard_checks_every_resolved_address(monkeypatch):
    answers = {
        "mixed.customer.test": ["93.184.216.34", "10.0.0.5"],
        "public.customer.test": ["93.184.216.34", "2606:4700:4700::1111"],
    }

    async def resolver(host: str, port: int, **kwargs: Any) -> list[Any]:
        family = lambda a: socket.AF_INET6 if ":" in a else socket.AF_INET  # noqa: E731
        return [(family(a), socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    guard = NetworkGuard()
    with pytest.raises(OutboundTokenError, match=r"10\.0\.0\.5"):
        await guard.check("https://mixed.customer.test/token")
    assert await guard.resolve("https://public.customer.test/token") == (
        "93.184.216.34",
        "2606:4700:4700::1111",
    )


def test_o3_guard_sees_ipv4_inside_ipv6():
    import ipaddress

    assert is_forbidden_address(ipaddress.ip_address("::ffff:10.1.2.3"))
    assert is_forbidden_address(ipaddress.ip_address("64:ff9b::7f00:1"))
    assert not is_forbidden_address(ipaddress.ip_address("::ffff:93.184.216.34"))
    assert not is_forbidden_address(ipaddress.ip_address("8.8.8.8"))


async def test_o3_cache_refuses_a_local_token_server_by_default(token_server, make_cache):
    cache = make_cache(guard=NetworkGuard())
    error = await failure(
        cache, endpoint_for(token_server, secret_client(token_server), "client_secret_basic")
    )
    assert error.reason == "token_url_forbidden"
    assert not error.retryable
    assert token_server.request_count == 0


# ---- pinning: the connection goes to the address that was checked ----


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Resolve only `answers` (each name's list is served in turn, the last one repeated); returns the
    names asked for, so a test can see whether httpx resolved the name a second time."""
    asked: list[str] = []
    real = asyncio.get_running_loop().getaddrinfo

    async def resolver(host: str, port: int, **kwargs: Any) -> list[Any]:
        if host not in answers:
            return await real(host, port, **kwargs)
        asked.append(host)
        address = answers[host][min(len(asked), len(answers[host])) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    return asked


async def test_o3_connects_to_the_checked_address_with_the_original_host(
    token_server, make_cache, monkeypatch
):
    # A rebinding name: the check sees 127.0.0.1; anything resolving again would get an unroutable one.
    asked = fake_dns(monkeypatch, {"token.customer.test": ["127.0.0.1", "203.0.113.1"]})
    url = f"http://token.customer.test:{token_server.port}/oauth/token"
    endpoint = endpoint_for(token_server, secret_client(token_server), "client_secret_basic", token_url=url)
    token = await make_cache(timeout_seconds=1.0, max_attempts=1).token(endpoint, WEBHOOK_URL)

    assert token.access_token
    assert asked == ["token.customer.test"]  # resolved once, by the guard; the connect used its answer
    (seen,) = token_server.requests
    assert seen.headers["host"] == f"token.customer.test:{token_server.port}"


async def test_o3_pinned_https_verifies_the_certificate_against_the_name(
    make_cache, monkeypatch, tmp_path: Path
):
    tls = make_certificate("token.customer.test", tmp_path)
    with TokenServer(tls=tls) as server:
        fake_dns(monkeypatch, {"token.customer.test": ["127.0.0.1"]})
        trusting = httpx.AsyncClient(verify=ssl.create_default_context(cadata=tls.ca_pem.decode()))
        try:
            cache = make_cache(trusting)
            client = secret_client(server)
            url = f"https://token.customer.test:{server.port}/oauth/token"
            token = await cache.token(
                endpoint_for(server, client, "client_secret_basic", token_url=url), WEBHOOK_URL
            )
            assert token.access_token
            assert server.sni_names == ["token.customer.test"]
            assert server.requests[0].headers["host"] == f"token.customer.test:{server.port}"

            # The certificate names token.customer.test only: reached by address, verification fails.
            by_address = endpoint_for(server, client, "client_secret_basic", credential_id="oc_ip")
            error = await failure(make_cache(trusting, max_attempts=1), by_address)
            assert error.reason == "token_server_unreachable"
            assert server.request_count == 1
        finally:
            await trusting.aclose()


# ---- the Basic encoding, for any text ----


@given(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1),
    st.text(alphabet=st.characters(exclude_categories=("Cs",))),
)
def test_o3_basic_encoding_round_trips(client_id, client_secret):
    encoded = base64.b64decode(basic_authorization(client_id, client_secret).removeprefix("Basic ")).decode(
        "ascii"
    )
    first, second = encoded.split(":", 1)  # the first ':' is the separator: the halves have none
    assert ":" not in first
    assert (unquote_plus(first), unquote_plus(second)) == (client_id, client_secret)
