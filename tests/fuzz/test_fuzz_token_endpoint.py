"""Fuzzing the OAuth token endpoint (I1, I2) and OAuth client authentication (C9), in process.

The Starlette app of `POST /oauth/token` runs with the real grants, pipeline and an SQLite store, driven
through httpx's ASGITransport on an event loop of its own. Random forms (repeated, missing and unknown
parameters, wrong content types, raw bytes, real and forged credentials, any Authorization header) must get
an RFC 6749 §5.1 answer or a §5.2 error, within a time bound, and a token only for a real credential.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from watchword import reasons, secret_format
from watchword.domain import ClientAuthentication, CredentialKind, Principal, Refusal
from watchword.http_api import API_KEY_GRANT, CLIENT_CREDENTIALS, build_app
from watchword.identify import oauth_client
from watchword.identify.oauth_client import ASSERTION_TYPE
from watchword.pipeline import Pipeline
from watchword.v1 import common_pb2

from support.fuzz_messages import INTERESTING_STRINGS
from support.fuzz_settings import fuzz
from support.issuing import AUDIENCE, issuing

T = TypeVar("T")
ENDPOINT = "https://watchword.test/oauth/token"
MAX_LIFETIME = 86400
CALL_SECONDS = 5.0  # per request: past it, the endpoint hangs
OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
BASIC, POST, SECRET_JWT = 1, 2, 3


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    pipeline: Pipeline
    basic_client: tuple[str, str]
    post_client: tuple[str, str]
    jwt_client: tuple[str, str]
    api_key: str

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_SECONDS)

    @property
    def secrets(self) -> list[str]:
        return [self.basic_client[1], self.post_client[1], self.jwt_client[1], self.api_key]


async def _world(directory: Path, loop: asyncio.AbstractEventLoop) -> World:
    issuer = await issuing(directory, token_endpoint=ENDPOINT)
    permissions = ["event.send", "event.list"]

    async def client(method: int) -> tuple[str, str]:
        return await issuer.register(
            kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT, permissions=permissions, client_auth_method=method
        )

    _, api_key = await issuer.register(kind=common_pb2.CREDENTIAL_KIND_API_KEY, permissions=permissions)
    app = build_app(issuer.grants, issuer.keyring.jwks, {})
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://watchword.test")
    clients = [await client(method) for method in (BASIC, POST, SECRET_JWT)]
    return World(loop, http, issuer.pipeline, *clients, api_key)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    built = asyncio.run_coroutine_threadsafe(_world(tmp_path_factory.mktemp("token"), loop), loop).result(60)
    yield built
    asyncio.run_coroutine_threadsafe(built.client.aclose(), loop).result(10)
    asyncio.run_coroutine_threadsafe(built.pipeline.store.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


FIELDS = [
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
    "scope",
    "audience",
    "requested_lifetime",
    "api_key",
    "refresh_token",
    "",
]
FIXED_VALUES = [
    CLIENT_CREDENTIALS,
    API_KEY_GRANT,
    "password",
    "",
    ASSERTION_TYPE,
    AUDIENCE,
    "urn:other",
    "event.send",
    "event.send event.list",
    "event.send  event.list",
    "application.create",
    "\x00",
    "0",
    "60",
    "-1",
    "1e3",
    "999999999",
    "9999999999",
    "٣",
    " 60",
]


def basic_header(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def usually(likely: st.SearchStrategy[str], other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`likely` four times out of five (one_of alone picks unevenly)."""
    return st.integers(0, 4).flatmap(lambda n: other if n == 0 else likely)


@st.composite
def forms(draw: st.DrawFn, world: World) -> list[tuple[str, str]]:
    """A form near a valid one: a grant with the fields it needs, real or forged, then a few changes."""
    ids = [world.basic_client[0], world.post_client[0], world.jwt_client[0], "0123456789abcdef"]
    values = st.one_of(
        st.sampled_from(FIXED_VALUES + world.secrets + ids),
        st.sampled_from(INTERESTING_STRINGS),
        st.text(max_size=30),
        st.builds(lambda n: "a" * n, st.integers(0, 70_000)),
    )
    grant = draw(st.sampled_from([CLIENT_CREDENTIALS, API_KEY_GRANT, "password", ""]))
    form: dict[str, str] = {"grant_type": grant}
    if grant == API_KEY_GRANT:
        form["api_key"] = draw(usually(st.sampled_from([world.api_key, *world.secrets]), values))
    elif draw(st.booleans()):  # client_secret_post
        client_id, secret = draw(st.sampled_from([world.post_client, world.basic_client, world.jwt_client]))
        form["client_id"] = draw(usually(st.just(client_id), values))
        form["client_secret"] = draw(usually(st.just(secret), values))
    likely = {
        "scope": ["event.send", "event.send event.list", "", "application.create", "event.send  event.list"],
        "audience": [AUDIENCE, "", "urn:other"],
        "requested_lifetime": ["0", "60", "3600", "-1", "1e3", "999999999", "9999999999"],
    }
    for name in draw(st.lists(st.sampled_from(sorted(likely)), unique=True)):
        form[name] = draw(usually(st.sampled_from(likely[name]), values))
    pairs = list(form.items())
    # Sometimes: unknown or repeated parameters, any value for any known one.
    if draw(st.integers(0, 2)) == 0:
        pairs += draw(st.lists(st.tuples(st.sampled_from(FIELDS), values), min_size=1, max_size=2))
    return pairs


@st.composite
def requests(draw: st.DrawFn, world: World) -> tuple[dict[str, str], bytes]:
    ids = [world.basic_client[0], world.post_client[0], world.jwt_client[0], "0123456789abcdef"]
    body = urlencode(draw(forms(world))).encode()
    # One request in five gets a broken body, one in five a wrong content type.
    if draw(st.integers(0, 4)) == 0:
        body = draw(st.one_of(st.binary(max_size=200), st.just(b"a=%ff&b=%zz&" + body), st.just(b"&" * 200)))
    content_type = "application/x-www-form-urlencoded"
    if draw(st.integers(0, 4)) == 0:
        content_type = draw(
            st.sampled_from(
                [
                    "application/x-www-form-urlencoded; charset=utf-8",
                    "application/json",
                    "",
                    "multipart/form-data; boundary=x",
                ]
            )
        )
    headers = {"content-type": content_type}
    # Half the requests carry an Authorization header, usually the real client's Basic credentials.
    authorization = None
    if draw(st.booleans()):
        other = st.one_of(
            st.builds(
                basic_header, st.sampled_from(ids), st.sampled_from(world.secrets) | st.text(max_size=10)
            ),
            st.sampled_from(
                ["Basic", "Basic =", "Bearer x", "basic " + base64.b64encode(b"\xff:\xff").decode()]
            ),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
        )
        authorization = draw(usually(st.just(basic_header(*world.basic_client)), other))
    if authorization is not None:
        headers["authorization"] = authorization
    return headers, body


@fuzz(examples=150, timeout_per_call=True)
@given(data=st.data())
def test_i1_i2_c9_any_request_to_the_token_endpoint_gets_an_oauth_answer(
    world: World, data: st.DataObject
) -> None:
    headers, body = data.draw(requests(world), label="request")
    response = world.run(world.client.post("/oauth/token", content=body, headers=headers))
    event(f"{response.status_code} {response.json().get('error', '')}")
    assert response.headers["cache-control"] == "no-store"
    document = response.json()
    if response.status_code == 200:
        # A token only for a credential that really exists, sent whole.
        carried = body.decode("utf-8", "replace") + headers.get("authorization", "")
        assert any(secret in carried or _basic_carries(headers, secret) for secret in world.secrets)
        assert document["token_type"] == "Bearer"
        assert 0 < document["expires_in"] <= MAX_LIFETIME
        assert isinstance(document["access_token"], str)
        return
    assert response.status_code in (400, 401), response.text
    assert document["error"] in OAUTH_ERRORS
    assert isinstance(document["error_description"], str)
    if response.status_code == 401 and headers.get("authorization", "").lower().startswith("basic "):
        assert response.headers["www-authenticate"] == 'Basic realm="watchword"'


def _basic_carries(headers: dict[str, str], secret: str) -> bool:
    _, _, encoded = headers.get("authorization", "").partition(" ")
    try:
        return secret in base64.b64decode(encoded).decode("utf-8", "replace")
    except ValueError:
        return False


@fuzz(examples=150, timeout_per_call=True)
@given(data=st.data())
def test_c9_any_client_authentication_is_a_principal_only_for_the_registered_method(
    world: World, data: st.DataObject
) -> None:
    ids = [world.basic_client[0], world.post_client[0], world.jwt_client[0], ""]
    texts = st.sampled_from(world.secrets + ids + INTERESTING_STRINGS) | st.text(max_size=20)
    authorization = usually(
        st.builds(basic_header, st.sampled_from(ids), st.sampled_from(world.secrets)), texts
    )
    # One method at a time, usually with the real client's values; sometimes several, or garbage.
    method = data.draw(st.sampled_from(["basic", "post", "assertion", "several"]), label="method")
    nothing = st.just("")
    auth = ClientAuthentication(
        client_id=data.draw(usually(st.sampled_from(ids), texts), label="client_id"),
        client_secret=data.draw(
            usually(st.sampled_from(world.secrets), texts) if method in ("post", "several") else nothing,
            label="client_secret",
        ),
        authorization=data.draw(
            authorization if method in ("basic", "several") else usually(nothing, texts),
            label="authorization",
        ),
        client_assertion_type=data.draw(usually(st.just(ASSERTION_TYPE), texts), label="assertion_type"),
        client_assertion=data.draw(
            texts if method in ("assertion", "several") else usually(nothing, texts), label="assertion"
        ),
    )
    found = world.run(world.pipeline.clients.verify(auth, datetime.now(UTC)))
    assert isinstance(found, Principal | Refusal)
    if isinstance(found, Refusal):
        assert found.reason in reasons.REASONS
        event(found.reason)
        return
    event(f"principal by {'basic' if auth.authorization else 'post'}")
    # Exactly one method, and the one the client was registered for, with its own secret.
    used = [bool(auth.authorization), bool(auth.client_secret), bool(auth.client_assertion)]
    assert sum(used) == 1
    if auth.authorization:
        assert auth.authorization == basic_header(*world.basic_client)
        assert found.credential_id == world.basic_client[0]
    else:
        assert (auth.client_id, auth.client_secret) == world.post_client
        assert found.credential_id == world.post_client[0]


ROUTES = ["/oauth/token", "/.well-known/jwks.json", "/.well-known/oauth-authorization-server"]


@fuzz(examples=100, timeout_per_call=True)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
    path=st.one_of(
        st.sampled_from(ROUTES),
        st.builds(
            lambda route, tail: route + tail,
            st.sampled_from(ROUTES),
            st.sampled_from(["/", "//", "%00", "/.."]),
        ),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(lambda p: "/" + p),
    ),
)
def test_i5_any_method_and_path_gets_a_client_error_or_the_route(
    world: World, method: str, path: str
) -> None:
    """Routing: the three routes answer their methods; anything else is a 4xx, never a server error."""
    response = world.run(world.client.request(method, path, headers={"content-type": "text/plain"}))
    event(str(response.status_code))
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert (method, path) in {
            ("GET", ROUTES[1]),
            ("GET", ROUTES[2]),
            ("HEAD", ROUTES[1]),
            ("HEAD", ROUTES[2]),
        }


# ---- C9/I2: one answer for an unknown client and a known one with a wrong secret, key or method ----

UNKNOWN_ID = "0123456789abcdef"
# Differ from request to request whatever is sent.
_PER_REQUEST_HEADERS = frozenset({"x-request-id", "date"})


def _assertion_form(client_id: str, secret: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": ENDPOINT, "iat": now, "exp": now + 60}
    token = jwt.encode({**claims, "jti": f"j{now}{secret[-6:]}{id(claims)}"}, secret.encode(), "HS256")
    return {
        "grant_type": CLIENT_CREDENTIALS,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token,
    }


def _answer(world: World, form: dict[str, str], headers: dict[str, str] | None = None) -> tuple:
    response = world.run(world.client.post("/oauth/token", data=form, headers=headers or {}))
    kept = {k: v for k, v in response.headers.items() if k not in _PER_REQUEST_HEADERS}
    return response.status_code, response.json(), kept


def test_c9_i2_unknown_and_wrong_clients_get_the_same_answer(world: World) -> None:
    """An attacker who learns nothing from the answer cannot list the client ids that exist."""
    post_id, post_secret = world.post_client
    basic_id, basic_secret = world.basic_client
    jwt_id, jwt_secret = world.jwt_client
    forged = secret_format.mint(CredentialKind.OAUTH_CLIENT, UNKNOWN_ID)
    grant = {"grant_type": CLIENT_CREDENTIALS}
    answers = {
        "post, unknown id": _answer(world, grant | {"client_id": UNKNOWN_ID, "client_secret": forged}),
        "post, wrong secret": _answer(
            world,
            grant
            | {
                "client_id": post_id,
                "client_secret": secret_format.mint(CredentialKind.OAUTH_CLIENT, post_id),
            },
        ),
        "post, known client of another method": _answer(
            world, grant | {"client_id": basic_id, "client_secret": basic_secret}
        ),
        "post, another client's secret": _answer(
            world, grant | {"client_id": jwt_id, "client_secret": post_secret}
        ),
        "assertion, unknown client": _answer(world, _assertion_form(UNKNOWN_ID, jwt_secret)),
        "assertion, wrong key": _answer(world, _assertion_form(jwt_id, post_secret)),
        "assertion, client of another method": _answer(world, _assertion_form(post_id, post_secret)),
    }
    expected = (401, {"error": "invalid_client", "error_description": "client authentication failed"})
    for name, (status, body, _) in answers.items():
        assert (status, body) == expected, name
    assert len({tuple(sorted(headers.items())) for _, _, headers in answers.values()}) == 1, answers
    basic = {
        "basic, unknown id": _answer(world, grant, {"authorization": basic_header(UNKNOWN_ID, forged)}),
        "basic, wrong secret": _answer(
            world,
            grant,
            {
                "authorization": basic_header(
                    basic_id, secret_format.mint(CredentialKind.OAUTH_CLIENT, basic_id)
                )
            },
        ),
        "basic, known client of another method": _answer(
            world, grant, {"authorization": basic_header(post_id, post_secret)}
        ),
    }
    assert len({repr(answer) for answer in basic.values()}) == 1, basic
    assert next(iter(basic.values()))[2]["www-authenticate"] == 'Basic realm="watchword"'


def test_c9_i2_an_unknown_client_costs_the_same_hashing_as_a_known_one(world: World, monkeypatch) -> None:
    """Similar timing: the secret of an unknown client is hashed, and an unknown client's assertion
    verified (against a stand-in key), as a known client's would be."""
    hashed: list[str] = []
    verified: list[str] = []
    real_hash, real_verify = secret_format.hash_secret, oauth_client.jws.verify
    monkeypatch.setattr(secret_format, "hash_secret", lambda token: hashed.append(token) or real_hash(token))
    monkeypatch.setattr(
        oauth_client.jws,
        "verify",
        lambda parsed, key: verified.append(key.algorithm) or real_verify(parsed, key),
    )
    post_id, post_secret = world.post_client
    forged = secret_format.mint(CredentialKind.OAUTH_CLIENT, UNKNOWN_ID)
    grant = {"grant_type": CLIENT_CREDENTIALS}
    _answer(world, grant | {"client_id": UNKNOWN_ID, "client_secret": forged})
    wrong = secret_format.mint(CredentialKind.OAUTH_CLIENT, post_id)  # well-formed, not its secret
    _answer(world, grant | {"client_id": post_id, "client_secret": wrong})
    assert len(hashed) == 2
    _answer(world, _assertion_form(UNKNOWN_ID, post_secret))
    _answer(world, _assertion_form(world.jwt_client[0], post_secret))
    assert verified == ["HS256", "HS256"]


@fuzz(examples=60)
@given(
    spelling=st.sampled_from(["application/x-www-form-urlencoded"]).flatmap(
        lambda media: st.lists(st.booleans(), min_size=len(media), max_size=len(media)).map(
            lambda upper: "".join(c.upper() if u else c for c, u in zip(media, upper, strict=True))
        )
    ),
    charset=st.sampled_from(
        ["", "; charset=utf-8", ";charset=UTF-8", '; Charset="utf-8"', "; charset=us-ascii"]
    ),
    space=st.sampled_from(["", " ", "\t"]),
)
def test_i2_the_form_media_type_is_matched_as_rfc_9110_says(
    world: World, spelling: str, charset: str, space: str
) -> None:
    """Type and subtype are case-insensitive, parameters (a UTF-8 charset) allowed."""
    post_id, post_secret = world.post_client
    body = urlencode({"grant_type": CLIENT_CREDENTIALS, "client_id": post_id, "client_secret": post_secret})
    headers = {"content-type": f"{space}{spelling}{space}{charset}"}
    response = world.run(world.client.post("/oauth/token", content=body, headers=headers))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/x-www-form-urlencodedx",
        "text/plain; x=application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=iso-8859-1",
        "",
    ],
)
def test_i2_other_media_types_are_invalid_request(world: World, content_type: str) -> None:
    post_id, post_secret = world.post_client
    body = urlencode({"grant_type": CLIENT_CREDENTIALS, "client_id": post_id, "client_secret": post_secret})
    response = world.run(
        world.client.post("/oauth/token", content=body, headers={"content-type": content_type})
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
