"""Fuzzing the outbound side (O3-O5): webhook and token URLs, the SSRF guard, Standard Webhooks signatures.

URLs are customer input. Whatever they hold, the checks answer with a problem or a clean
OutboundTokenError, the guard never lets a non-public address through, and the payload signature
verifies with the official `standardwebhooks` package for any body and message id.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import time
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from watchword.api import outbound_admin
from watchword.api.errors import FieldError
from watchword.crypto.master_key import MasterKey, generate
from watchword.domain import ClientAuthMethod
from watchword.outbound import network_guard, signer, standard_webhooks
from watchword.outbound.network_guard import NetworkGuard, OutboundTokenError, is_forbidden_address
from watchword.outbound.secrets import new_payload_signing_secret
from watchword.outbound.token_endpoint import TokenEndpoint
from watchword.v1 import admin_pb2

from support.fuzz_settings import fuzz

MASTER = MasterKey.from_text(generate(), "fuzz")

hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.sampled_from(
        [
            "localhost",
            "example.com",
            "EXAMPLE.com.",
            "[",
            "[::1",
            "[v1.x]",
            "xn--",
            "ex ample",
            "a@b",
            "[::1]]",
        ]
    ),
    st.text(max_size=15),
)
urls = st.one_of(
    st.builds(
        lambda scheme, userinfo, host, port, rest: f"{scheme}://{userinfo}{host}{port}{rest}",
        st.sampled_from(["http", "https", "HTTP", "ftp", "file", "", "javascript"]),
        st.sampled_from(["", "user@", "user:pass@", "@", ":@"]),
        hosts,
        st.sampled_from(["", ":0", ":443", ":65536", ":99999999", ":-1", ":x", ":"]),
        st.sampled_from(["", "/", "/token?x=1", "#frag", "/%zz", "\\\\evil", "/\x00"]) | st.text(max_size=10),
    ),
    st.text(max_size=60),
)


@fuzz(examples=300)
@given(urls)
def test_o1_o5_any_webhook_url_is_usable_or_named_a_problem(url: str) -> None:
    """SignOutbound's URL check (also used on token URLs): a problem or None, never an exception."""
    problem = signer.check_url(url)
    assert problem is None or isinstance(problem, str)


public_answers = st.lists(
    st.one_of(
        st.ip_addresses().map(str),
        st.ip_addresses(v=6).map(lambda a: f"{a}%eth0"),
        st.sampled_from(["127.0.0.1", "::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::", "8.8.8.8"]),
    ),
    min_size=1,
    max_size=4,
)


@fuzz(examples=150)
@given(urls, public_answers, st.booleans())
def test_o3_the_guard_passes_only_public_addresses_for_any_url_and_resolver_answer(
    url: str, answers: list[str], allow_private: bool
) -> None:
    """Whatever the URL and whatever the resolver answers (no real DNS: the resolver is replaced), the
    guard returns only addresses it checked, or refuses with a documented, non-echoing error."""

    async def resolver(_host: str, _port: int) -> tuple[str, ...]:
        return tuple(dict.fromkeys(answers))

    guard = NetworkGuard(allow_private=allow_private, allowed_hosts=frozenset({"allowed.example"}))
    with mock.patch.object(network_guard, "_getaddrinfo", resolver):
        try:
            addresses: tuple[str, ...] | OutboundTokenError = asyncio.run(guard.resolve(url))
        except OutboundTokenError as error:
            addresses = error
    if isinstance(addresses, OutboundTokenError):
        assert addresses.reason == "token_url_forbidden"
        assert not addresses.retryable
        return
    if not addresses:
        assert "allowed.example" in url.lower()
        return
    assert set(addresses) <= set(answers)
    if not allow_private:
        assert not any(is_forbidden_address(network_guard._parse_address(a)) for a in addresses)


def _admin_refuses(token_url: str) -> str:
    """The field the admin API names when it refuses to store the URL; "" when it stores it."""
    request = admin_pb2.CreateOutboundCredentialRequest(
        credential=admin_pb2.OutboundCredential(
            organization_id="org",
            name="n",
            scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
            token_url=token_url,
            client_id="c",
            client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
        ),
        secrets=admin_pb2.OutboundSecrets(client_secret="s"),
    )
    try:
        outbound_admin.build(request, MASTER)
    except FieldError as exc:
        return exc.field
    return ""


def _fetcher_accepts(token_url: str) -> bool:
    try:
        TokenEndpoint("oc_1", token_url, "c", ClientAuthMethod.CLIENT_SECRET_POST, client_secret="s")
    except ValueError:
        return False
    return True


def _guard_parses(token_url: str) -> bool:
    try:
        network_guard._parse_url(token_url)
    except OutboundTokenError:
        return False
    return True


odd_urls = st.sampled_from(
    [
        "http://0177.0.0.1/t",
        "http://\uff11\uff12\uff17.0.0.1/t",
        " https://token.example/t",
        "https://token.example/t\t",
        "https://token.example:65536/t",
        "https://tok%65n.example/t",
        "https://token.example/t",
        "https://[::1]:8443/t",
        "http://127.1/t",
    ]
)


@fuzz(examples=300)
@given(urls | odd_urls)
def test_o3_a_token_url_is_stored_exactly_when_the_fetcher_and_the_guard_can_parse_it(url: str) -> None:
    """One parser: the admin API never stores a token URL that every later signing would fail on."""
    refused = _admin_refuses(url)
    assert refused in ("", "credential.token_url")
    stored = not refused
    assert stored == _fetcher_accepts(url) == _guard_parses(url)
    if stored:
        parsed = network_guard.parse_token_url(url)
        assert url.isascii()
        assert url == url.strip()
        assert parsed.scheme in ("http", "https")
        assert not parsed.userinfo
        assert parsed.port is None or 0 < parsed.port < 65536


@fuzz(examples=400)
@given(st.ip_addresses(v=4))
def test_o3_an_ipv4_address_is_judged_alike_through_every_ipv6_wrapping(
    address: ipaddress.IPv4Address,
) -> None:
    """IPv4-mapped, NAT64 and 6to4 addresses lead to the IPv4 address inside: a forbidden one stays
    forbidden however it is wrapped."""
    forbidden = is_forbidden_address(address)
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert is_forbidden_address(mapped) == forbidden
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    six_to_four = ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80) | 1)
    if forbidden:
        assert is_forbidden_address(nat64)
        assert is_forbidden_address(six_to_four)


@fuzz(examples=300)
@given(st.ip_addresses())
def test_o3_no_loopback_private_or_link_local_address_is_ever_allowed(
    address: ipaddress._BaseAddress,
) -> None:
    verdict = is_forbidden_address(address)
    assert isinstance(verdict, bool)
    if address.is_loopback or address.is_private or address.is_link_local or address.is_multicast:
        assert verdict


json_bodies = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
).map(lambda value: json.dumps(value).encode())
message_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)


@fuzz(examples=100)
@given(json_bodies, message_ids, st.integers(1, 3), st.integers(0, 2**8))
def test_o5_any_body_and_message_id_verify_with_the_official_package(
    body: bytes, message_id: str, how_many: int, secret_seed: int
) -> None:
    """Every secret in use during a rotation overlap signs; a receiver holding any one of them verifies."""
    secrets_in_use = [new_payload_signing_secret() for _ in range(how_many)]
    timestamp = int(time.time())
    headers = dict(standard_webhooks.headers(secrets_in_use, message_id, timestamp, body))
    assert headers["webhook-id"] == message_id
    for secret in secrets_in_use:
        assert Webhook(secret).verify(body, headers) == json.loads(body)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == how_many
    for value in signatures:
        version, _, digest = value.partition(",")
        assert version == "v1"
        assert len(base64.b64decode(digest, validate=True)) == 32
