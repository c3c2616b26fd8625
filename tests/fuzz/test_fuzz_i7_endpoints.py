"""Fuzzing I7's introspection (RFC 7662) and revocation (RFC 7009) endpoints, in process.

The Starlette app of the OAuth HTTP endpoints runs with the real cores, pipeline and an SQLite store,
driven through httpx's ASGITransport on an event loop of its own. Random requests (any form, repeated,
missing and unknown parameters, raw bytes, wrong content types, real and forged client credentials and
tokens) must get `{"active": false}`, an active answer only for a real token sent whole by a client holding
the grant, an empty 200 from revocation, or an RFC 6749 §5.2 error: never a server error, never a secret.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from watchword.http_api import INTROSPECT_PATH, REVOKE_PATH, build_app
from watchword.invalidation import InvalidationBus
from watchword.issue.grants import Requested
from watchword.issue.introspection import IntrospectionEndpoint
from watchword.issue.revocation import RevocationEndpoint
from watchword.issue.tokens import IssuedToken
from watchword.pipeline import Pipeline
from watchword.v1 import common_pb2

from support.fuzz_messages import INTERESTING_STRINGS
from support.fuzz_settings import fuzz
from support.issuing import issuing

T = TypeVar("T")
CALL_SECONDS = 5.0  # per request: past it, the endpoint hangs
OAUTH_ERRORS = frozenset(
    {"invalid_request", "invalid_client", "unauthorized_client", "unsupported_token_type"}
)
BASIC, POST = 1, 2
FORM = "application/x-www-form-urlencoded"


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    pipeline: Pipeline
    granted: tuple[str, str]  # client_secret_basic, both grants
    ungranted: tuple[str, str]  # client_secret_post, no grant
    tokens: list[str]  # an API key, a static token, a Watchword token: each active until revoked

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_SECONDS)

    @property
    def secrets(self) -> list[str]:
        return [self.granted[1], self.ungranted[1], *self.tokens]


async def _world(directory: Path, loop: asyncio.AbstractEventLoop) -> World:
    issuer = await issuing(directory)
    InvalidationBus(issuer.pipeline.caches).attach(issuer.store)  # revocations reach the caches
    oauth_client = common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT
    granted = await issuer.register(
        kind=oauth_client, permissions=["token.introspect", "token.revoke"], client_auth_method=BASIC
    )
    ungranted = await issuer.register(kind=oauth_client, permissions=["event.send"], client_auth_method=POST)
    _, api_key = await issuer.register(kind=common_pb2.CREDENTIAL_KIND_API_KEY, permissions=["event.send"])
    _, static = await issuer.register(
        kind=common_pb2.CREDENTIAL_KIND_STATIC_TOKEN, permissions=["event.list"]
    )
    token = await issuer.grants.api_key_exchange(api_key, Requested())
    assert isinstance(token, IssuedToken)
    checks = {
        INTROSPECT_PATH: IntrospectionEndpoint(issuer.pipeline),
        REVOKE_PATH: RevocationEndpoint(issuer.pipeline),
    }
    app = build_app(issuer.grants, issuer.keyring.jwks, {}, None, checks)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://watchword.test")
    return World(loop, http, issuer.pipeline, granted, ungranted, [api_key, static, token.access_token])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    built = asyncio.run_coroutine_threadsafe(_world(tmp_path_factory.mktemp("i7"), loop), loop).result(60)
    yield built
    asyncio.run_coroutine_threadsafe(built.client.aclose(), loop).result(10)
    asyncio.run_coroutine_threadsafe(built.pipeline.store.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def basic_header(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def usually(likely: st.SearchStrategy[str], other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`likely` four times out of five."""
    return st.integers(0, 4).flatmap(lambda n: other if n == 0 else likely)


@st.composite
def requests(draw: st.DrawFn, world: World) -> tuple[dict[str, str], bytes]:
    """A request near a valid one: a token (real or not), a client (usually the granted one), then a few
    changes: other or repeated parameters, a broken body, another content type."""
    values = st.one_of(
        st.sampled_from(INTERESTING_STRINGS + world.secrets),
        st.text(max_size=30),
        st.builds(lambda n: "a" * n, st.integers(0, 70_000)),
    )
    pairs = [("token", draw(usually(st.sampled_from(world.tokens), values)))]
    if draw(st.booleans()):
        pairs.append(("token_type_hint", draw(st.sampled_from(["access_token", "refresh_token", "x", ""]))))
    headers = {"content-type": FORM}
    if draw(st.integers(0, 3)) == 0:  # client_secret_post (of the client without the grant)
        pairs += [("client_id", world.ungranted[0]), ("client_secret", world.ungranted[1])]
    else:
        forged = st.builds(basic_header, st.sampled_from([world.granted[0], "x"]), values)
        headers["authorization"] = draw(usually(st.just(basic_header(*world.granted)), forged))
    if draw(st.integers(0, 2)) == 0:
        names = st.sampled_from(["token", "client_id", "client_secret", "token_type_hint", "scope", ""])
        pairs += draw(st.lists(st.tuples(names, values), min_size=1, max_size=2))
    body = urlencode(pairs).encode()
    if draw(st.integers(0, 4)) == 0:
        body = draw(st.one_of(st.binary(max_size=200), st.just(b"token=%ff%fe"), st.just(b"&" * 200)))
    if draw(st.integers(0, 4)) == 0:
        headers["content-type"] = draw(st.sampled_from([FORM + "; charset=latin-1", "application/json", ""]))
    return headers, body


def _sent_whole(headers: dict[str, str], body: bytes, secret: str) -> bool:
    return secret in body.decode("utf-8", "replace") or secret in headers.get("authorization", "")


@fuzz(examples=150, timeout_per_call=True)
@given(data=st.data(), path=st.sampled_from([INTROSPECT_PATH, REVOKE_PATH]))
def test_i7_any_request_gets_an_rfc_answer_and_active_only_for_a_real_token(
    world: World, data: st.DataObject, path: str
) -> None:
    headers, body = data.draw(requests(world), label="request")
    response = world.run(world.client.post(path, content=body, headers=headers))
    assert response.headers["cache-control"] == "no-store"
    assert all(secret not in response.text for secret in world.secrets)
    if response.status_code == 200 and path == REVOKE_PATH:
        event("revoke 200")
        assert response.content == b""
        return
    document = response.json()
    if response.status_code == 200:
        event(f"introspect active={document['active']}")
        if document["active"]:
            assert headers.get("authorization") == basic_header(*world.granted)
            assert any(_sent_whole(headers, body, token) for token in world.tokens)
        else:
            assert document == {"active": False}
        return
    event(f"{response.status_code} {document['error']}")
    assert response.status_code in (400, 401, 403), response.text
    assert set(document) == {"error", "error_description"}
    assert document["error"] in OAUTH_ERRORS
