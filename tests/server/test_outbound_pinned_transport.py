"""O3/O4: `outbound.pinned_transport`, the HTTP under the token fetcher, against a real token server on
127.0.0.1 (tests/support/token_server.py): bounded bodies, no redirects, pinned addresses, no secrets in
messages."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from watchword.outbound.network_guard import NetworkGuard, OutboundTokenError
from watchword.outbound.pinned_transport import PinnedTransport, pinned_targets, redacted

from support.token_server import Reply, TokenServer

LOCAL = NetworkGuard(allow_private=True)
FORM = b"grant_type=client_credentials"


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    with TokenServer() as running:
        yield running


@pytest.fixture
async def transport() -> AsyncIterator[PinnedTransport]:
    made = PinnedTransport(None, guard=LOCAL, timeout_seconds=2.0, max_response_bytes=1024)
    yield made
    await made.aclose()


async def test_o3_a_form_is_posted_with_the_headers_that_keep_it_bounded(token_server, transport):
    token_server.always(Reply.json(200, {"access_token": "t"}))
    answer = await transport.post_form(token_server.token_url, {"Authorization": "Basic eA=="}, FORM)
    assert (answer.status, answer.body, answer.problem) == (200, b'{"access_token": "t"}', "")
    (seen,) = token_server.requests
    assert seen.form == {"grant_type": "client_credentials"}
    assert seen.headers["accept-encoding"] == "identity"
    assert seen.headers["connection"] == "close"
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("send_length", [True, False])
async def test_o3_a_body_over_the_bound_is_not_kept(token_server, transport, send_length):
    token_server.always(Reply.huge(4096, send_length=send_length))
    answer = await transport.post_form(token_server.token_url, {}, FORM)
    assert answer.body is None
    assert answer.problem == "is larger than 1024 bytes"


async def test_o3_a_redirect_is_refused_and_names_the_url_without_its_query(token_server, transport):
    token_server.always(Reply.redirect("https://elsewhere.example/t"))
    with pytest.raises(OutboundTokenError) as caught:
        await transport.post_form(token_server.token_url + "?key=s3cret", {}, FORM)
    assert (caught.value.reason, caught.value.retryable) == ("redirect_refused", False)
    assert "s3cret" not in str(caught.value)
    assert token_server.base_url in str(caught.value)


async def test_o3_a_refused_connection_is_unreachable_and_retryable(transport):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OutboundTokenError) as caught:
        await transport.post_form(f"http://127.0.0.1:{port}/t", {}, FORM)
    assert (caught.value.reason, caught.value.retryable) == ("token_server_unreachable", True)


async def test_o3_every_request_is_counted(token_server):
    counted: list[int] = []
    transport = PinnedTransport(
        None, guard=LOCAL, timeout_seconds=2.0, max_response_bytes=1024, on_request=lambda: counted.append(1)
    )
    token_server.always(Reply.json(200, {"access_token": "t"}))
    await transport.post_form(token_server.token_url, {}, FORM)
    await transport.post_form(token_server.token_url, {}, FORM)
    await transport.aclose()
    assert len(counted) == 2


async def test_o3_a_client_passed_in_is_left_open(token_server):
    async with httpx.AsyncClient() as client:
        transport = PinnedTransport(client, guard=LOCAL, timeout_seconds=2.0, max_response_bytes=1024)
        await transport.aclose()
        assert not client.is_closed


def test_o3_a_name_is_pinned_to_each_checked_address_with_host_and_sni():
    url = httpx.URL("https://token.customer.example:8443/t")
    targets = pinned_targets(url, ("203.0.113.7", "2001:db8::1", "fe80::1%eth0"))
    assert [str(target) for target, _, _ in targets] == [
        "https://203.0.113.7:8443/t",
        "https://[2001:db8::1]:8443/t",
    ]
    for _, headers, extensions in targets:
        assert headers == {"Host": "token.customer.example:8443"}
        assert extensions == {"sni_hostname": "token.customer.example"}


def test_o3_an_address_or_an_allowed_host_is_connected_to_as_given():
    by_address = httpx.URL("http://127.0.0.1:9/t")
    assert pinned_targets(by_address, ("127.0.0.1",)) == [(by_address, {}, {})]
    allowed = httpx.URL("http://tokens.internal/t")
    assert pinned_targets(allowed, ()) == [(allowed, {}, {})]
    plain = pinned_targets(httpx.URL("http://token.example/t"), ("203.0.113.7",))
    assert plain[0][2] == {}  # no SNI without TLS


def test_o3_redacted_drops_the_query_and_fragment():
    assert redacted("https://t.example:1/p/a?secret=1#f") == "https://t.example:1/p/a"
