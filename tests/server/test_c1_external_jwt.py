"""C1 external IdP JWTs (Keycloak-style OIDC), against a real discovery/JWKS server on 127.0.0.1.

Covers key sources (discovery, jwks_uri, jwks_file), iss/aud/exp/nbf/iat with leeway, the rate-limited
unknown-kid refresh with keys rotated mid-test, an issuer that goes down, algorithm confusion and `none`,
and reading the user and organization roles from configurable claim paths.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from watchword import reasons
from watchword.domain import CredentialKind, Principal, Refusal, Transport
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.identify.issuer_settings import IssuerSettings, load_issuers
from watchword.identify.jwks_source import MAX_DOCUMENT_BYTES, JwksSource, JwksSourceError

from support.jwks_server import JwksServer, generate_key
from support.jwt_verify import verify_jwt

NOW = 1_700_000_000.0


class FakeClock:
    """The monotonic clock the JWKS sources see: moved by hand, so rate limits and TTLs are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    with JwksServer(algorithms=("RS256", "ES256")) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy configured on the test machine must not sit between us and 127.0.0.1.
    async with httpx.AsyncClient(trust_env=False) as shared:
        yield shared


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def settings_for(idp: JwksServer, source: str = "discovery", **overrides: Any) -> IssuerSettings:
    values: dict[str, Any] = {"issuer": idp.issuer, "audiences": ["watchword"], "allow_insecure_http": True}
    if source == "discovery":
        values["discovery_url"] = idp.discovery_url
    elif source == "jwks_uri":
        values["jwks_uri"] = idp.jwks_uri
    values.update(overrides)
    return IssuerSettings.model_validate(values)


def claims_for(idp: JwksServer, **changes: Any) -> dict[str, Any]:
    """Valid claims; a change to None removes the claim."""
    claims: dict[str, Any] = {
        "iss": idp.issuer,
        "aud": "watchword",
        "sub": "user-1",
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": "token-1",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


@asynccontextmanager
async def started(
    settings: Sequence[IssuerSettings], client: httpx.AsyncClient | None, clock: FakeClock
) -> AsyncIterator[ExternalJwtVerifier]:
    verifier = ExternalJwtVerifier(settings, client, clock=clock)
    await verifier.start()
    try:
        yield verifier
    finally:
        await verifier.close()


async def verify(verifier: ExternalJwtVerifier, token: str, now: float = NOW) -> Principal | Refusal:
    return await asyncio.wait_for(verify_jwt(verifier, token, Transport.BEARER, now), timeout=10)


def reason(outcome: Principal | Refusal) -> str:
    return outcome.reason if isinstance(outcome, Refusal) else "accepted"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}.{b64url(signature)}"


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# ---- key sources ----


async def test_c1_rs256_and_es256_tokens_verify_via_discovery(idp, client, clock):
    rsa_key, ec_key = idp.keys
    async with started([settings_for(idp)], client, clock) as verifier:
        for key in (rsa_key, ec_key):
            outcome = await verify(verifier, idp.sign(claims_for(idp), key))
            assert isinstance(outcome, Principal), outcome
            assert outcome.kind is CredentialKind.EXTERNAL_JWT
            assert outcome.id == "user-1"
            assert outcome.issuer == idp.issuer
            assert outcome.transport is Transport.BEARER
            assert outcome.expires_at == datetime.fromtimestamp(NOW + 300, UTC)
            assert outcome.token_id == "token-1"
            assert outcome.memberships == ()
    assert (idp.discovery_requests, idp.jwks_requests) == (1, 1)


async def test_c1_tokens_verify_via_jwks_uri_without_discovery(idp, client, clock):
    async with started([settings_for(idp, "jwks_uri")], client, clock) as verifier:
        for key in idp.keys:
            assert isinstance(await verify(verifier, idp.sign(claims_for(idp), key)), Principal)
    assert (idp.discovery_requests, idp.jwks_requests) == (0, 1)


async def test_c1_tokens_verify_via_static_jwks_file_without_any_fetch(idp, tmp_path, clock):
    idp.add_key("PS256")
    idp.add_key("EdDSA")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(idp.jwks_document()))
    settings = settings_for(idp, "file", jwks_file=jwks_file)
    async with started([settings], None, clock) as verifier:
        for key in idp.keys:
            outcome = await verify(verifier, idp.sign(claims_for(idp), key))
            assert isinstance(outcome, Principal), (key.algorithm, outcome)
        # A static set never refreshes: an unknown kid is simply unknown.
        stranger = generate_key("RS256", "not-in-file")
        assert (
            reason(await verify(verifier, idp.sign(claims_for(idp), stranger))) == reasons.TOKEN_KEY_UNKNOWN
        )
    assert (idp.discovery_requests, idp.jwks_requests) == (0, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read"),
        ("not json", "not valid JSON"),
        ('["a list"]', "not a JSON object"),
        (
            '{"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI", "alg": "HS256"}]}',
            "oct",
        ),
        ('{"keys": []}', "no signature key"),
    ],
)
async def test_c1_bad_static_jwks_file_is_a_startup_error(idp, tmp_path, clock, content, message):
    jwks_file = tmp_path / "jwks.json"
    if content is not None:
        jwks_file.write_text(content)
    verifier = ExternalJwtVerifier([settings_for(idp, "file", jwks_file=jwks_file)], clock=clock)
    with pytest.raises(JwksSourceError, match=message):
        await verifier.start()
    await verifier.close()


async def test_c1_weak_rsa_key_in_static_file_is_a_startup_error(idp, tmp_path, clock):
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    weak = RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 1024).public_key(), as_dict=True)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [{**weak, "kid": "weak", "alg": "RS256"}]}))
    verifier = ExternalJwtVerifier([settings_for(idp, "file", jwks_file=jwks_file)], clock=clock)
    with pytest.raises(JwksSourceError, match="1024 bits"):
        await verifier.start()


async def test_c1_verifier_owns_its_client_when_none_is_given(idp, clock, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with started([settings_for(idp)], None, clock) as verifier:
        assert isinstance(await verify(verifier, idp.sign(claims_for(idp))), Principal)


# ---- iss, aud and the time claims ----


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"iss": None}, reasons.TOKEN_CLAIMS_INVALID),
        ({"iss": "https://elsewhere.example/realms/test"}, reasons.TOKEN_ISSUER_UNKNOWN),
        ({"iss": 42}, reasons.TOKEN_CLAIMS_INVALID),
        ({"aud": None}, reasons.TOKEN_CLAIMS_INVALID),
        ({"aud": "another-service"}, reasons.TOKEN_AUDIENCE_MISMATCH),
        ({"aud": ["another-service", "yet-another"]}, reasons.TOKEN_AUDIENCE_MISMATCH),
        ({"aud": ["another-service", "watchword"]}, "accepted"),
        ({"aud": "api"}, "accepted"),  # the second configured audience
        ({"exp": None}, reasons.TOKEN_CLAIMS_INVALID),
        ({"exp": "tomorrow"}, reasons.TOKEN_CLAIMS_INVALID),
        ({"sub": None}, reasons.TOKEN_CLAIMS_INVALID),
        ({"sub": ""}, reasons.TOKEN_CLAIMS_INVALID),
        ({"sub": 12345}, reasons.TOKEN_CLAIMS_INVALID),
        ({"jti": 7}, reasons.TOKEN_CLAIMS_INVALID),
    ],
)
async def test_c1_iss_aud_exp_and_user_id_are_required_and_checked(idp, client, clock, changes, expected):
    settings = settings_for(idp, audiences=["watchword", "api"])
    async with started([settings], client, clock) as verifier:
        outcome = await verify(verifier, idp.sign(claims_for(idp, **changes)))
    assert reason(outcome) == expected


@pytest.mark.parametrize(
    ("leeway", "changes", "expected"),
    [
        (30, {"exp": int(NOW) - 29}, "accepted"),
        (30, {"exp": int(NOW) - 31}, reasons.TOKEN_EXPIRED),
        (0, {"exp": int(NOW) - 1}, reasons.TOKEN_EXPIRED),
        (30, {"nbf": int(NOW) + 29}, "accepted"),
        (30, {"nbf": int(NOW) + 31}, reasons.TOKEN_NOT_YET_VALID),
        (0, {"nbf": int(NOW) + 1}, reasons.TOKEN_NOT_YET_VALID),
        (30, {"iat": int(NOW) + 29}, "accepted"),
        (30, {"iat": int(NOW) + 31}, reasons.TOKEN_NOT_YET_VALID),
        (30, {"iat": "yesterday"}, reasons.TOKEN_CLAIMS_INVALID),
        (30, {"iat": None}, reasons.TOKEN_CLAIMS_INVALID),  # required by default: see required_claims
        (120, {"exp": int(NOW) - 119}, "accepted"),
        (120, {"exp": int(NOW) - 121}, reasons.TOKEN_EXPIRED),
    ],
)
async def test_c1_exp_nbf_iat_with_bounded_leeway(idp, client, clock, leeway, changes, expected):
    async with started([settings_for(idp, leeway_seconds=leeway)], client, clock) as verifier:
        assert reason(await verify(verifier, idp.sign(claims_for(idp, **changes)))) == expected


def test_c1_leeway_is_bounded():
    with pytest.raises(ValidationError, match="less than or equal to 120"):
        IssuerSettings(
            issuer="https://sso.example",
            audiences=("a",),
            jwks_uri="https://sso.example/j",
            leeway_seconds=121,
        )


# ---- unknown kid: refresh, rate limit, sharing ----


async def test_c1_unknown_kid_triggers_exactly_one_refresh_after_rotation(idp, client, clock):
    old_key = idp.keys[0]
    async with started([settings_for(idp, "jwks_uri")], client, clock) as verifier:
        old_token = idp.sign(claims_for(idp), old_key)
        assert isinstance(await verify(verifier, old_token), Principal)
        assert idp.jwks_requests == 1

        new_key = idp.rotate("RS256")  # mid-test: the old key is gone, a new one signs
        new_token = idp.sign(claims_for(idp), new_key)
        assert isinstance(await verify(verifier, new_token), Principal)
        assert idp.jwks_requests == 2
        assert isinstance(await verify(verifier, new_token), Principal)
        assert idp.jwks_requests == 2  # known now: from memory

        # The refreshed set no longer holds the old key, and asking again costs no fetch.
        assert reason(await verify(verifier, old_token)) == reasons.TOKEN_KEY_UNKNOWN
        assert idp.jwks_requests == 2


async def test_c1_junk_kid_flood_costs_at_most_one_fetch_per_window(idp, client, clock):
    key = idp.keys[0]
    settings = settings_for(idp, "jwks_uri", refresh_min_interval_seconds=30)
    async with started([settings], client, clock) as verifier:
        before = idp.jwks_requests
        junk = [idp.sign(claims_for(idp), key, headers={"kid": f"junk-{n}"}) for n in range(200)]
        outcomes = [await verify(verifier, token) for token in junk]
        assert {reason(outcome) for outcome in outcomes} == {reasons.TOKEN_KEY_UNKNOWN}
        assert idp.jwks_requests - before <= 1
        source = verifier.sources[idp.issuer]
        assert source.stats.rate_limited >= 199

        clock.advance(29)
        assert reason(await verify(verifier, junk[0])) == reasons.TOKEN_KEY_UNKNOWN
        assert idp.jwks_requests - before <= 1  # still inside the window

        clock.advance(2)  # the window has passed: one more refresh is allowed, then the limit again
        for token in junk[:50]:
            await verify(verifier, token)
        assert idp.jwks_requests - before <= 2
        # Tokens from the known key are never slowed by the flood.
        assert isinstance(await verify(verifier, idp.sign(claims_for(idp), key)), Principal)


async def test_c1_concurrent_unknown_kid_requests_share_one_fetch(idp, client, clock):
    async with started([settings_for(idp, "jwks_uri")], client, clock) as verifier:
        before = idp.jwks_requests
        new_key = idp.add_key("ES256")
        idp.set(delay_seconds=0.3)  # so that every request arrives while the fetch is running
        tokens = [idp.sign(claims_for(idp, sub=f"user-{n}"), new_key) for n in range(20)]
        calls = (verify_jwt(verifier, token, Transport.BEARER, NOW) for token in tokens)
        outcomes = await asyncio.wait_for(asyncio.gather(*calls), timeout=10)
        assert all(isinstance(outcome, Principal) for outcome in outcomes), outcomes
        assert idp.jwks_requests - before == 1


async def test_c1_a_cancelled_caller_does_not_cancel_the_shared_fetch(idp, client, clock):
    async with started([settings_for(idp, "jwks_uri")], client, clock) as verifier:
        new_key = idp.add_key("RS256")
        idp.set(delay_seconds=0.3)
        token = idp.sign(claims_for(idp), new_key)
        impatient = asyncio.ensure_future(verify_jwt(verifier, token, Transport.BEARER, NOW))
        patient = asyncio.ensure_future(verify_jwt(verifier, token, Transport.BEARER, NOW))
        await asyncio.sleep(0.05)
        impatient.cancel()
        assert isinstance(await asyncio.wait_for(patient, timeout=10), Principal)


async def test_c1_token_without_kid_uses_the_only_key_else_is_unknown(client, clock):
    with JwksServer(algorithms=("RS256",)) as idp:
        async with started([settings_for(idp, "jwks_uri")], client, clock) as verifier:
            token = idp.sign(claims_for(idp), with_kid=False)
            assert isinstance(await verify(verifier, token), Principal)
            idp.add_key("RS256")
            clock.advance(301)  # stale: the next call refreshes in the background
            assert isinstance(await verify(verifier, token), Principal)
            await until(lambda: idp.jwks_requests == 2)
            await until(lambda: len(verifier.sources[idp.issuer].keys) == 2)
            assert reason(await verify(verifier, token)) == reasons.TOKEN_KEY_UNKNOWN


# ---- the cache: TTL refresh and max-age ----


async def test_c1_stale_keys_refresh_in_the_background_and_drop_removed_keys(idp, client, clock):
    old_key = idp.keys[0]
    async with started([settings_for(idp, "jwks_uri", jwks_cache_seconds=300)], client, clock) as verifier:
        token = idp.sign(claims_for(idp), old_key)
        clock.advance(299)
        assert isinstance(await verify(verifier, token), Principal)
        assert idp.jwks_requests == 1  # still fresh
        idp.drop_key(old_key.kid)
        clock.advance(2)
        # Stale: answered from memory at once, refreshed behind the scenes.
        assert isinstance(await verify(verifier, token), Principal)
        await until(lambda: old_key.kid not in verifier.sources[idp.issuer].keys)
        assert idp.jwks_requests == 2
        assert reason(await verify(verifier, token)) == reasons.TOKEN_KEY_UNKNOWN


@pytest.mark.parametrize(
    ("cache_control", "fresh_for"),
    [
        ("max-age=1000", 1000),
        ("public, max-age=5", 60),
        ("max-age=999999", 86400),
        ("no-store", 60),
        (None, 300),
    ],
)
async def test_c1_max_age_is_honoured_within_bounds(idp, client, clock, cache_control, fresh_for):
    idp.set(cache_control=cache_control)
    async with started([settings_for(idp, "jwks_uri", jwks_cache_seconds=300)], client, clock) as verifier:
        token = idp.sign(claims_for(idp))
        clock.advance(fresh_for - 1)
        await verify(verifier, token)
        await asyncio.sleep(0.05)
        assert idp.jwks_requests == 1
        clock.advance(2)
        await verify(verifier, token)
        await until(lambda: idp.jwks_requests == 2)


# ---- an issuer that is down ----


@pytest.mark.parametrize("mode", ["503", "drop", "garbage"])
async def test_c1_issuer_down_keeps_known_keys_and_refuses_new_kids(idp, client, clock, mode):
    known = idp.keys[0]
    async with started([settings_for(idp)], client, clock) as verifier:
        source = verifier.sources[idp.issuer]
        idp.set(mode=mode)
        clock.advance(301)  # the keys are stale and the issuer is down
        token = idp.sign(claims_for(idp), known)
        assert isinstance(await verify(verifier, token), Principal)
        await until(lambda: source.stats.failures == 1)
        assert isinstance(await verify(verifier, token), Principal)

        newcomer = generate_key("RS256", "never-published")
        outcome = await verify(verifier, idp.sign(claims_for(idp), newcomer))
        assert reason(outcome) == reasons.TOKEN_KEY_UNKNOWN
        assert source.stats.failures == 2
        assert isinstance(await verify(verifier, token), Principal)


async def test_c1_issuer_down_at_start_does_not_fail_start_and_recovers(idp, client, clock):
    idp.set(mode="503")
    async with started([settings_for(idp)], client, clock) as verifier:
        source = verifier.sources[idp.issuer]
        assert source.stats.failures == 1
        token = idp.sign(claims_for(idp))
        assert reason(await verify(verifier, token)) == reasons.TOKEN_KEY_UNKNOWN
        idp.set(mode="up")
        clock.advance(31)  # past the unknown-kid window
        assert isinstance(await verify(verifier, token), Principal)


async def test_c1_oversized_or_invalid_jwks_keeps_known_keys(idp, client, clock):
    known = idp.keys[0]
    async with started([settings_for(idp, "jwks_uri")], client, clock) as verifier:
        source = verifier.sources[idp.issuer]
        idp.set(jwks_padding_bytes=MAX_DOCUMENT_BYTES + 1)
        assert not await source.refresh()
        idp.set(jwks_padding_bytes=0, extra_jwks=[{"kty": "oct", "k": "c2VjcmV0", "kid": "shared"}])
        assert not await source.refresh()
        assert source.stats.failures == 2
        assert isinstance(await verify(verifier, idp.sign(claims_for(idp), known)), Principal)


async def test_c1_keycloak_style_jwks_with_an_encryption_key_loads(idp, client, clock):
    enc = generate_key("RS256", "enc-key").public_jwk()
    idp.set(
        extra_jwks=[{**enc, "use": "enc", "alg": "RSA-OAEP"}, {**enc, "kid": "ops", "key_ops": ["encrypt"]}]
    )
    async with started([settings_for(idp)], client, clock) as verifier:
        assert set(verifier.sources[idp.issuer].keys) == {key.kid for key in idp.keys}
        assert isinstance(await verify(verifier, idp.sign(claims_for(idp))), Principal)


async def test_c1_redirects_followed_only_within_the_same_origin(idp, client, clock):
    idp.set(jwks_redirect=idp.jwks_uri + "/moved")
    async with started([settings_for(idp, "jwks_uri")], client, clock) as verifier:
        assert isinstance(await verify(verifier, idp.sign(claims_for(idp))), Principal)
    port = idp.base_url.rsplit(":", 1)[1]
    idp.set(jwks_redirect=f"http://localhost:{port}/jwks/moved")  # another origin
    async with started([settings_for(idp, "jwks_uri")], client, FakeClock()) as verifier:
        assert verifier.sources[idp.issuer].stats.failures == 1
        assert reason(await verify(verifier, idp.sign(claims_for(idp)))) == reasons.TOKEN_KEY_UNKNOWN
    assert idp.state.requests["/jwks/moved"] == 1


async def test_c1_discovery_document_naming_another_issuer_is_refused(idp, client, clock):
    idp.set(discovery_issuer="https://attacker.example/realms/test")
    async with started([settings_for(idp)], client, clock) as verifier:
        assert verifier.sources[idp.issuer].stats.failures == 1
        assert reason(await verify(verifier, idp.sign(claims_for(idp)))) == reasons.TOKEN_KEY_UNKNOWN
    assert idp.jwks_requests == 0  # the keys it points to were never fetched


# ---- algorithms and confusion ----


async def test_c1_algorithm_outside_the_allow_list_is_refused_before_any_fetch(idp, client, clock):
    rsa_key, ec_key = idp.keys
    async with started([settings_for(idp, algorithms=["ES256"])], client, clock) as verifier:
        before = idp.jwks_requests
        outcome = await verify(verifier, idp.sign(claims_for(idp), rsa_key))
        assert reason(outcome) == reasons.TOKEN_ALGORITHM_NOT_ALLOWED
        assert isinstance(await verify(verifier, idp.sign(claims_for(idp), ec_key)), Principal)
        assert idp.jwks_requests == before
        # The RS256 key was not even loaded: it is not allowed for this issuer.
        assert rsa_key.kid not in verifier.sources[idp.issuer].keys


async def test_c1_token_alg_must_match_the_keys_own_algorithm(idp, client, clock):
    rsa_key = idp.keys[0]
    async with started([settings_for(idp)], client, clock) as verifier:
        # A PS256 signature presented under the kid of a key published for RS256.
        token = idp.sign(claims_for(idp), rsa_key, headers={"alg": "PS256"})
        assert reason(await verify(verifier, token)) == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
async def test_c1_hmac_token_signed_with_the_public_key_is_refused(idp, client, clock, algorithm):
    rsa_key = idp.keys[0]
    pem = rsa_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": algorithm, "kid": rsa_key.kid, "typ": "JWT"}
    unsigned = craft(header, claims_for(idp)).rsplit(".", 1)[0]
    digest = getattr(hashlib, "sha" + algorithm[2:])
    for secret in (pem, json.dumps(rsa_key.public_jwk()).encode()):
        signature = hmac.new(secret, unsigned.encode(), digest).digest()
        async with started([settings_for(idp)], client, clock) as verifier:
            outcome = await verify(verifier, f"{unsigned}.{b64url(signature)}")
        assert reason(outcome) == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_c1_alg_none_is_refused(idp, client, clock, alg):
    async with started([settings_for(idp)], client, clock) as verifier:
        token = craft({"alg": alg, "kid": idp.keys[0].kid}, claims_for(idp))
        assert reason(await verify(verifier, token)) == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


async def test_c1_tampered_token_fails_the_signature(idp, client, clock):
    async with started([settings_for(idp)], client, clock) as verifier:
        header, _, signature = idp.sign(claims_for(idp)).split(".")
        forged = b64url(json.dumps(claims_for(idp, sub="admin")).encode())
        assert (
            reason(await verify(verifier, f"{header}.{forged}.{signature}"))
            == reasons.TOKEN_SIGNATURE_INVALID
        )


async def test_c1_a_token_of_one_issuer_is_never_accepted_for_another(client, clock):
    with JwksServer() as tenant_a, JwksServer() as tenant_b:
        issuers = [settings_for(tenant_a), settings_for(tenant_b)]
        async with started(issuers, client, clock) as verifier:
            a_key, b_key = tenant_a.keys[0], tenant_b.keys[0]
            # Signed by A but claiming to come from B: B has no such key...
            forged = tenant_a.sign(claims_for(tenant_b), a_key)
            assert reason(await verify(verifier, forged)) == reasons.TOKEN_KEY_UNKNOWN
            # ...and naming B's kid does not make A's signature B's.
            forged = tenant_a.sign(claims_for(tenant_b), a_key, headers={"kid": b_key.kid})
            assert reason(await verify(verifier, forged)) == reasons.TOKEN_SIGNATURE_INVALID
            outcome = await verify(verifier, tenant_b.sign(claims_for(tenant_b), b_key))
            assert isinstance(outcome, Principal)
            assert outcome.issuer == tenant_b.issuer


async def test_c1_jku_and_x5u_headers_are_never_fetched(idp, client, clock):
    attacker = generate_key("RS256", "attacker")
    async with started([settings_for(idp)], client, clock) as verifier:
        for header in ("jku", "x5u"):
            token = idp.sign(claims_for(idp), attacker, headers={header: idp.base_url + "/attacker-jwks"})
            assert reason(await verify(verifier, token)) == reasons.TOKEN_KEY_UNKNOWN
        token = idp.sign(claims_for(idp), attacker, headers={"jwk": attacker.public_jwk()})
        assert reason(await verify(verifier, token)) == reasons.TOKEN_KEY_UNKNOWN
    assert idp.state.requests["/attacker-jwks"] == 0


async def test_c1_kid_is_an_opaque_id_never_a_path(idp, client, clock, tmp_path):
    (tmp_path / "key.json").write_text(json.dumps(idp.keys[0].public_jwk()))
    async with started([settings_for(idp)], client, clock) as verifier:
        for kid in (str(tmp_path / "key.json"), "../../jwks", "/jwks?kid=1", "' OR 1=1 --"):
            token = idp.sign(claims_for(idp), headers={"kid": kid})
            assert reason(await verify(verifier, token)) == reasons.TOKEN_KEY_UNKNOWN
    assert sum(idp.state.requests.values()) <= 3  # discovery, priming, at most one unknown-kid refresh


async def test_c1_oversized_token_is_refused_before_any_key_lookup(idp, client, clock):
    async with started([settings_for(idp)], client, clock) as verifier:
        before = idp.jwks_requests
        token = idp.sign(claims_for(idp, padding="x" * 9000), headers={"kid": "unknown"})
        assert reason(await verify(verifier, token)) == reasons.TOKEN_MALFORMED
        assert idp.jwks_requests == before


async def test_c1_crit_header_is_refused(idp, client, clock):
    async with started([settings_for(idp)], client, clock) as verifier:
        token = idp.sign(claims_for(idp), headers={"crit": ["exp"], "exp": 1})
        assert reason(await verify(verifier, token)) == reasons.TOKEN_HEADER_UNSUPPORTED


@pytest.mark.parametrize(
    "transport", [Transport.QUERY, Transport.BASIC, Transport.HEADER_PAIR, Transport.FORM]
)
async def test_c1_refused_over_transports_a_bearer_jwt_does_not_use(idp, client, clock, transport):
    async with started([settings_for(idp)], client, clock) as verifier:
        outcome = await verify_jwt(verifier, idp.sign(claims_for(idp)), transport, NOW)
    assert reason(outcome) == reasons.TRANSPORT_NOT_ALLOWED


@pytest.mark.parametrize(
    "transport", [Transport.BEARER, Transport.COOKIE, Transport.BARE, Transport.BATCH_ENTRY]
)
async def test_c1_accepted_over_bearer_like_transports(idp, client, clock, transport):
    async with started([settings_for(idp)], client, clock) as verifier:
        outcome = await verify_jwt(verifier, idp.sign(claims_for(idp)), transport, NOW)
    assert isinstance(outcome, Principal)
    assert outcome.transport is transport


async def test_c1_refusal_messages_reveal_no_token_details(idp, client, clock):
    async with started([settings_for(idp)], client, clock) as verifier:
        token = idp.sign(claims_for(idp), headers={"kid": "secret-looking-kid"})
        outcome = await verify(verifier, token)
        assert isinstance(outcome, Refusal)
        assert "secret-looking-kid" not in outcome.message
        assert idp.issuer not in outcome.message
        unknown = await verify(verifier, idp.sign(claims_for(idp, iss="https://nobody.example")))
        assert isinstance(unknown, Refusal)
        assert "nobody" not in unknown.message


# ---- claim paths: user id and organization roles ----


async def test_c1_keycloak_realm_roles_with_an_organization_claim(idp, client, clock):
    settings = settings_for(
        idp,
        user_id_claim="preferred_username",
        organization_claim="organization",
        roles_claim="realm_access.roles",
    )
    keycloak = {
        "preferred_username": "alice",
        "organization": "org-acme",
        "realm_access": {"roles": ["offline_access", "editor", "admin", "editor"]},
        "resource_access": {"account": {"roles": ["view-profile"]}},
    }
    async with started([settings], client, clock) as verifier:
        outcome = await verify(verifier, idp.sign(claims_for(idp, **keycloak)))
        assert isinstance(outcome, Principal), outcome
        assert outcome.id == "alice"
        assert outcome.memberships == (("org-acme", ("admin", "editor", "offline_access")),)

        no_org = await verify(verifier, idp.sign(claims_for(idp, **{**keycloak, "organization": None})))
        assert isinstance(no_org, Principal)
        assert no_org.memberships == ()
        no_roles = await verify(verifier, idp.sign(claims_for(idp, **{**keycloak, "realm_access": {}})))
        assert isinstance(no_roles, Principal)
        assert no_roles.memberships == ()

        for broken in (
            {"organization": ["org-acme"]},
            {"realm_access": {"roles": "admin"}},
            {"realm_access": {"roles": [1]}},
        ):
            outcome = await verify(verifier, idp.sign(claims_for(idp, **{**keycloak, **broken})))
            assert reason(outcome) == reasons.TOKEN_CLAIMS_INVALID, broken


async def test_c1_organizations_object_claim_at_a_nested_path(idp, client, clock):
    async with started(
        [settings_for(idp, organizations_claim="watchword.organizations")], client, clock
    ) as verifier:
        organizations = {"org-b": ["viewer"], "org-a": ["editor", "admin"], "org-c": []}
        outcome = await verify(
            verifier, idp.sign(claims_for(idp, watchword={"organizations": organizations}))
        )
        assert isinstance(outcome, Principal), outcome
        assert outcome.memberships == (("org-a", ("admin", "editor")), ("org-b", ("viewer",)))

        for broken in ({"org-a": "admin"}, {"": ["admin"]}, "org-a:admin", {"org-a": [None]}):
            token = idp.sign(claims_for(idp, watchword={"organizations": broken}))
            assert reason(await verify(verifier, token)) == reasons.TOKEN_CLAIMS_INVALID, broken


async def test_c1_organizations_list_of_org_role_strings(idp, client, clock):
    async with started([settings_for(idp, organizations_claim="orgs")], client, clock) as verifier:
        orgs = ["org-a:admin", "org-b:viewer", "org-a:editor", "urn:org:c:viewer"]
        outcome = await verify(verifier, idp.sign(claims_for(idp, orgs=orgs)))
        assert isinstance(outcome, Principal), outcome
        assert outcome.memberships == (
            ("org-a", ("admin", "editor")),
            ("org-b", ("viewer",)),
            ("urn:org:c", ("viewer",)),
        )
        for broken in (["org-a"], ["org-a:"], [":admin"], [3]):
            assert (
                reason(await verify(verifier, idp.sign(claims_for(idp, orgs=broken))))
                == reasons.TOKEN_CLAIMS_INVALID
            )


# ---- settings ----


def _settings(**values: Any) -> IssuerSettings:
    base: dict[str, Any] = {"issuer": "https://sso.example/realms/a", "audiences": ["watchword"]}
    return IssuerSettings.model_validate({**base, **values})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"discovery_url": "http://sso.example/.well-known/openid-configuration"}, "plain http"),
        ({"jwks_uri": "http://127.0.0.1:8080/jwks"}, "plain http"),
        ({}, "exactly one of"),
        ({"jwks_uri": "https://sso.example/jwks", "jwks_file": "jwks.json"}, "exactly one of"),
        ({"jwks_uri": "ftp://sso.example/jwks"}, "absolute https"),
        ({"jwks_uri": "https://user:pw@sso.example/jwks"}, "user name or password"),
        ({"jwks_uri": "https://sso.example/jwks", "algorithms": ["HS256"]}, "shared-secret"),
        ({"jwks_uri": "https://sso.example/jwks", "algorithms": ["none"]}, "never accepted"),
        ({"jwks_uri": "https://sso.example/jwks", "algorithms": ["RS1"]}, "unknown algorithm"),
        ({"jwks_uri": "https://sso.example/jwks", "algorithms": []}, "at least 1"),
        ({"jwks_uri": "https://sso.example/jwks", "audiences": []}, "at least 1"),
        ({"jwks_uri": "https://sso.example/jwks", "roles_claim": "realm_access.roles"}, "go together"),
        (
            {
                "jwks_uri": "https://sso.example/jwks",
                "organizations_claim": "orgs",
                "organization_claim": "org",
                "roles_claim": "roles",
            },
            "not both",
        ),
        ({"jwks_uri": "https://sso.example/jwks", "user_id_claim": "a..b"}, "not a claim path"),
        ({"jwks_uri": "https://sso.example/jwks", "jwks_cache_seconds": 10}, "greater than or equal to 60"),
        ({"jwks_uri": "https://sso.example/jwks", "surprise": 1}, "Extra inputs"),
        ({"jwks_uri": "https://sso.example/jwks", "issuer": " https://sso.example"}, "whitespace"),
    ],
)
def test_c1_settings_refuse_dangerous_or_unclear_configuration(values, message):
    with pytest.raises(ValidationError, match=message):
        _settings(**values)


def test_c1_settings_defaults_and_insecure_http_opt_in():
    settings = _settings(jwks_uri="http://127.0.0.1:8080/jwks", allow_insecure_http=True)
    assert settings.algorithms == ("RS256", "ES256", "PS256", "EdDSA")
    assert (settings.leeway_seconds, settings.user_id_claim) == (30, "sub")
    assert (settings.refresh_min_interval_seconds, settings.jwks_cache_seconds) == (30, 300)
    with pytest.raises(ValidationError):
        settings.issuer = "changed"  # type: ignore[misc]


def test_c1_load_issuers_refuses_duplicates():
    table = {
        "issuer": "https://sso.example/realms/a",
        "audiences": ["w"],
        "jwks_uri": "https://sso.example/j",
    }
    assert load_issuers(None) == []
    assert [entry.issuer for entry in load_issuers([table])] == ["https://sso.example/realms/a"]
    with pytest.raises(ValueError, match="configured twice"):
        load_issuers([table, {**table, "audiences": ["other"]}])
    with pytest.raises(ValueError, match="audiences"):
        load_issuers([{k: v for k, v in table.items() if k != "audiences"}])


def test_c1_jwks_source_with_a_url_needs_a_client():
    with pytest.raises(ValueError, match="httpx"):
        JwksSource(_settings(jwks_uri="https://sso.example/jwks"))


def test_c1_keycloak_group_paths_name_organization_and_role() -> None:
    from watchword.identify.external_jwt import memberships
    from watchword.identify.issuer_settings import IssuerSettings

    settings = IssuerSettings(
        issuer="https://idp.example/realms/r",
        audiences=["api"],
        jwks_uri="https://idp.example/certs",
        organizations_claim="groups",
    )
    claims = {"groups": ["/acme/admin", "/acme/viewer", "/orgs/globex/editor", "/staff"]}
    assert memberships(claims, settings) == (("acme", ("admin", "viewer")), ("globex", ("editor",)))


# ---- issue #12: what strict verifiers refuse (S8, C1) ----


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [1e12, 10**13, 2**64, -1, True])
async def test_s8_c1_signed_token_with_a_time_claim_out_of_range_is_refused_not_a_crash(
    idp, client, clock, name, value
):
    async with started([settings_for(idp)], client, clock) as verifier:
        outcome = await verify(verifier, idp.sign(claims_for(idp, **{name: value})))
    assert reason(outcome) == reasons.TOKEN_CLAIMS_INVALID


async def test_c1_cty_header_is_refused(idp, client, clock):
    async with started([settings_for(idp)], client, clock) as verifier:
        for cty in ("JWT", "application/json"):
            token = idp.sign(claims_for(idp), headers={"cty": cty})
            assert reason(await verify(verifier, token)) == reasons.TOKEN_HEADER_UNSUPPORTED, cty


async def test_c1_required_claims_are_per_issuer_and_require_iat_by_default(idp, client, clock):
    assert settings_for(idp).required_claims == ("iat",)
    no_iat = idp.sign(claims_for(idp, iat=None))
    async with started([settings_for(idp)], client, clock) as verifier:
        assert reason(await verify(verifier, no_iat)) == reasons.TOKEN_CLAIMS_INVALID
    # The previous default, on purpose: iat is optional, checked when present.
    async with started([settings_for(idp, required_claims=[])], client, clock) as verifier:
        assert reason(await verify(verifier, no_iat)) == "accepted"
        future = idp.sign(claims_for(idp, iat=int(NOW) + 31))
        assert reason(await verify(verifier, future)) == reasons.TOKEN_NOT_YET_VALID
    async with started([settings_for(idp, required_claims=["iat", "jti", "nbf"])], client, clock) as verifier:
        assert reason(await verify(verifier, idp.sign(claims_for(idp)))) == reasons.TOKEN_CLAIMS_INVALID
        with_nbf = idp.sign(claims_for(idp, nbf=int(NOW)))
        assert reason(await verify(verifier, with_nbf)) == "accepted"


@pytest.mark.parametrize(
    ("claims", "headers", "expected"),
    [
        ({"typ": "ID", "azp": "hook0-app", "nonce": "n"}, {}, reasons.TOKEN_TYPE_NOT_ACCEPTED),  # Keycloak
        ({"typ": "Refresh"}, {}, reasons.TOKEN_TYPE_NOT_ACCEPTED),
        ({"typ": "Logout"}, {}, reasons.TOKEN_TYPE_NOT_ACCEPTED),
        ({"typ": ["Bearer"]}, {}, reasons.TOKEN_TYPE_NOT_ACCEPTED),
        ({}, {"typ": "id_token+jwt"}, reasons.TOKEN_TYPE_NOT_ACCEPTED),
        ({}, {"typ": "logout+jwt"}, reasons.TOKEN_TYPE_NOT_ACCEPTED),
        ({}, {"typ": 1}, reasons.TOKEN_TYPE_NOT_ACCEPTED),
        ({"typ": "Bearer"}, {}, "accepted"),  # Keycloak's access tokens
        ({}, {"typ": "at+jwt"}, "accepted"),  # RFC 9068
        ({}, {"typ": "application/at+jwt"}, "accepted"),
        ({}, {"typ": "jwt"}, "accepted"),
    ],
)
async def test_c1_keycloak_id_token_is_not_accepted_as_an_access_token(
    idp, client, clock, claims, headers, expected
):
    """Its audience matches (Keycloak puts the client in an ID token's aud), yet it is not an access token."""
    async with started([settings_for(idp)], client, clock) as verifier:
        token = idp.sign(claims_for(idp, **claims), headers=headers)
        assert reason(await verify(verifier, token)) == expected


async def test_c1_azp_is_checked_against_the_allowed_clients_where_set(idp, client, clock):
    async with started([settings_for(idp, allowed_clients=["hook0-app", "cli"])], client, clock) as verifier:
        for azp, expected in (
            ("hook0-app", "accepted"),
            ("cli", "accepted"),
            ("attacker-app", reasons.TOKEN_CLIENT_NOT_ALLOWED),
            (None, reasons.TOKEN_CLIENT_NOT_ALLOWED),
            (["hook0-app"], reasons.TOKEN_CLIENT_NOT_ALLOWED),
        ):
            token = idp.sign(claims_for(idp, azp=azp))
            assert reason(await verify(verifier, token)) == expected, azp
    async with started([settings_for(idp)], client, clock) as verifier:  # not set: any client
        assert reason(await verify(verifier, idp.sign(claims_for(idp, azp="attacker-app")))) == "accepted"


async def test_c1_keycloak_26_organization_claim_names_the_organization(idp, client, clock):
    roles = {"realm_access": {"roles": ["editor"]}}
    by_alias = settings_for(
        idp,
        organization_claim="organization",
        roles_claim="realm_access.roles",
        organization_claim_format="keycloak_alias",
    )
    by_id = settings_for(
        idp,
        organization_claim="organization",
        roles_claim="realm_access.roles",
        organization_claim_format="keycloak_id",
    )
    attributes = {"acme": {"id": "42f5c3e0-org-uuid", "tier": ["gold"]}}
    cases = [
        (by_alias, ["acme"], (("acme", ("editor",)),)),
        (by_alias, "acme", (("acme", ("editor",)),)),
        (by_alias, attributes, (("acme", ("editor",)),)),
        (by_alias, [], ()),
        (by_alias, {}, ()),
        (by_id, attributes, (("42f5c3e0-org-uuid", ("editor",)),)),
    ]
    for settings, claim, expected in cases:
        async with started([settings], client, clock) as verifier:
            outcome = await verify(verifier, idp.sign(claims_for(idp, organization=claim, **roles)))
            assert isinstance(outcome, Principal), (claim, outcome)
            assert outcome.memberships == expected, claim
    broken = [
        (by_alias, ["acme", "globex"]),  # realm roles are not per organization: which one?
        (by_alias, {"acme": {}, "globex": {}}),
        (by_alias, [1]),
        (by_alias, [["acme"]]),
        (by_alias, [""]),
        (by_alias, {"acme": ["not", "attributes"]}),
        (by_id, ["acme"]),  # no id without the mapper's "Add organization id"
        (by_id, {"acme": {"id": 7}}),
        (by_alias, 7),
    ]
    for settings, claim in broken:
        async with started([settings], client, clock) as verifier:
            outcome = await verify(verifier, idp.sign(claims_for(idp, organization=claim, **roles)))
            assert reason(outcome) == reasons.TOKEN_CLAIMS_INVALID, claim


def test_c1_organization_claim_format_needs_organization_claim():
    with pytest.raises(ValidationError, match="organization_claim_format"):
        _settings(jwks_uri="https://sso.example/jwks", organization_claim_format="keycloak_alias")
    with pytest.raises(ValidationError):
        _settings(jwks_uri="https://sso.example/jwks", required_claims=["i at"])


async def test_c1_keycloak_group_paths_with_or_without_the_leading_slash(idp, client, clock):
    async with started([settings_for(idp, organizations_claim="groups")], client, clock) as verifier:
        groups = ["acme/admin", "/acme/viewer", "orgs/globex/editor", "/staff", "staff/"]
        outcome = await verify(verifier, idp.sign(claims_for(idp, groups=groups)))
        assert isinstance(outcome, Principal), outcome
        assert outcome.memberships == (("acme", ("admin", "viewer")), ("globex", ("editor",)))
