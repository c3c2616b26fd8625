"""The secret scanner's key document fetched from a URL (`hygiene.secret_scanning.FetchedKeys`), served by
a real HTTP server on 127.0.0.1: fetched at start, again for a key it lacks (rate limited), and what a
bad answer does (keeps the keys fetched before)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from watchword.hygiene.secret_scanning import FetchedKeys

from support.scanner_keys import KeyServer, document


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    yield server
    server.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as session:
        yield session


async def test_keys_are_fetched_and_a_rotated_key_is_fetched_once(key_server: KeyServer, client) -> None:
    first, rotated = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    key_server.body = document(first=first)
    now = [0.0]
    keys = FetchedKeys(key_server.url, client, min_refresh=60.0, clock=lambda: now[0])
    await keys.load()
    assert await keys.get("first") is not None
    assert key_server.requests == 1
    key_server.body = document(first=first, rotated=rotated)
    assert await keys.get("rotated") is None  # within a minute of the last fetch: not fetched again
    assert key_server.requests == 1
    now[0] = 61.0
    assert await keys.get("rotated") is not None  # the scanner rotated: one fetch finds it
    assert await keys.get("never-published") is None
    assert key_server.requests == 2


@pytest.mark.parametrize("status", [404, 500, 302])
async def test_a_bad_answer_keeps_the_keys_fetched_before(key_server: KeyServer, client, status: int) -> None:
    known = ec.generate_private_key(ec.SECP256R1())
    key_server.body = document(known=known)
    keys = FetchedKeys(key_server.url, client, min_refresh=0.0)
    await keys.load()
    key_server.status = status
    with pytest.raises(ValueError, match="secret_scanning_public_keys_url"):
        await keys.load()
    assert await keys.get("known") is not None
    assert await keys.get("other") is None


async def test_an_oversized_or_malformed_document_is_refused(key_server: KeyServer, client) -> None:
    keys = FetchedKeys(key_server.url, client)
    key_server.body = b"[" + b" " * (300 * 1024) + b"]"
    with pytest.raises(ValueError, match="too large"):
        await keys.load()
    key_server.body = b'{"public_keys": "nope"}'
    with pytest.raises(ValueError, match="public_keys"):
        await keys.load()


async def test_an_unreachable_url_is_a_value_error(client) -> None:
    keys = FetchedKeys("http://127.0.0.1:1/keys", client)
    with pytest.raises(ValueError, match="secret_scanning_public_keys_url"):
        await keys.load()
    assert await keys.get("any") is None


async def test_after_a_failed_fetch_it_is_tried_again_sooner(key_server: KeyServer, client) -> None:
    now = [0.0]
    keys = FetchedKeys(key_server.url, client, min_refresh=60.0, clock=lambda: now[0])
    key_server.status = 503
    with pytest.raises(ValueError, match="503"):
        await keys.load()
    key_server.status, key_server.body = 200, document(back=ec.generate_private_key(ec.SECP256R1()))
    now[0] = 1.0
    assert await keys.get("back") is None  # not within 2 s of the failure
    now[0] = 2.5
    assert await keys.get("back") is not None
    assert key_server.requests == 2
