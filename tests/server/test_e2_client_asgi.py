"""E2: the ASGI middleware in front of a real Starlette app, deciding through the real server: 200 with the
principal on request.state, 401 with WWW-Authenticate, 403 for denials and unknown routes, 503 when
Watchword is down, spoofed x-watchword-* headers removed, websocket handshakes closed with 1008."""

from __future__ import annotations

import base64

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from watchword_client import (
    AsyncWatchwordClient,
    CredentialKind,
    Principal,
    Route,
    WatchwordMiddleware,
)
from watchword_client.asgi import challenge

from support.client_fake_watchword import FakeWatchword
from support.tamper import change_last_character
from support.tenants import API_KEY, APPLICATION_SECRET, create_credential, make_tenant

ROUTES = [
    Route.public("GET", "/healthz"),
    Route("POST", "/v1/applications/{application_id}/event_types", "event_type.create"),
    Route("GET", "/v1/applications/{application_id}/events/{event_type}", "event.list"),
    Route("GET", "/ws/applications/{application_id}/events/{event_type}", "event.list"),
]


async def echo(request: Request) -> JSONResponse:
    principal = request.state.watchword_principal
    assert principal is None or isinstance(principal, Principal)
    return JSONResponse(
        {
            "principal": principal.id if principal else None,
            "kind": principal.kind.name if principal else None,
            "decision_id": getattr(request.state, "watchword_decision_id", None),
            "headers": {k: v for k, v in request.headers.items() if k.startswith("x-watchword-")},
        }
    )


async def stream(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"principal": websocket.state.watchword_principal.id})
    await websocket.close()


def make_app(target: str, deadline: float = 2.0) -> tuple[WatchwordMiddleware, AsyncWatchwordClient]:
    app = Starlette(
        routes=[
            StarletteRoute("/healthz", echo),
            StarletteRoute("/v1/applications/{application_id}/event_types", echo, methods=["POST"]),
            StarletteRoute("/v1/applications/{application_id}/events/{event_type}", echo),
            StarletteRoute("/v1/unrouted", echo),
            WebSocketRoute("/ws/applications/{application_id}/events/{event_type}", stream),
        ]
    )
    client = AsyncWatchwordClient(target, deadline=deadline)
    return WatchwordMiddleware(app, client=client, routes=ROUTES), client


@pytest.fixture(scope="module")
def secrets(server):
    tenant = make_tenant(server, "asgi")
    app_secret = create_credential(
        server,
        kind=APPLICATION_SECRET,
        organization_id=tenant.organization_id,
        application_id=tenant.application_id,
        name="a",
    )
    key = create_credential(
        server,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="k",
        permissions=["event.list"],
        event_types_allowed=["order.*"],
    )
    return tenant, app_secret, key


@pytest.fixture
async def http(server):
    middleware, client = make_app(server.address)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url="http://api"
    ) as http:
        yield http
    await client.close()


async def test_e2_asgi_allowed_request_reaches_the_app_with_the_principal(http, secrets) -> None:
    tenant, app_secret, _ = secrets
    response = await http.post(
        f"/v1/applications/{tenant.application_id}/event_types",
        headers={"authorization": f"Bearer {app_secret.secret}", "x-watchword-principal-id": "spoofed"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["principal"] == app_secret.credential.id
    assert body["kind"] == CredentialKind.APPLICATION_SECRET.name
    assert len(body["decision_id"]) == 24  # the decision's id, as in Watchword's audit record
    assert body["headers"] == {
        "x-watchword-principal-id": app_secret.credential.id,
        "x-watchword-organization-id": tenant.organization_id,
        "x-watchword-credential-kind": "application_secret",
        "x-watchword-credential-id": app_secret.credential.id,
    }


async def test_e2_asgi_missing_or_bad_credential_is_401_with_a_challenge(http, secrets) -> None:
    tenant, _, _ = secrets
    path = f"/v1/applications/{tenant.application_id}/event_types"
    missing = await http.post(path)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/json"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"] == "unauthenticated"
    assert missing.json()["reason"] == "credential_missing"
    assert set(missing.json()) == {"error", "reason", "message"}
    bad = await http.post(path, headers={"authorization": "Bearer wwas_garbage"})
    assert bad.status_code == 401
    assert bad.json()["reason"] == "credential_malformed"
    assert "www-authenticate" in bad.headers
    # RFC 6750 §3.1: a refused token is `invalid_token`; a request without one gets a plain challenge.
    assert bad.headers["www-authenticate"] == 'Bearer realm="watchword", error="invalid_token"'
    assert missing.headers["www-authenticate"] == 'Bearer realm="watchword"'


async def test_e2_asgi_a_refused_basic_credential_gets_a_basic_challenge(http, secrets) -> None:
    tenant, _, key = secrets
    path = f"/v1/applications/{tenant.application_id}/events/order.paid"
    wrong_pair = f"{tenant.organization_id}:{change_last_character(key.secret)}"
    wrong = base64.b64encode(wrong_pair.encode()).decode()
    refused = await http.get(path, headers={"authorization": f"Basic {wrong}"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Basic realm="watchword"'


@pytest.mark.parametrize(
    ("reason", "headers", "expected"),
    [
        ("credential_missing", [], 'Bearer realm="watchword"'),
        (
            "token_expired",
            [("Authorization", "Bearer x.y.z")],
            'Bearer realm="watchword", error="invalid_token"',
        ),
        (
            "credential_unknown",
            [("hull-access-token", "x")],
            'Bearer realm="watchword", error="invalid_token"',
        ),
        ("credential_unknown", [("authorization", " basic eDp5")], 'Basic realm="watchword"'),
    ],
)
def test_e2_asgi_challenge_for_a_refusal_without_one_follows_the_servers_rule(
    reason: str, headers: list[tuple[str, str]], expected: str
) -> None:
    """An older server's refusal may carry no challenge: the middleware applies the same rule."""
    assert challenge(reason, headers) == expected


async def test_e2_asgi_denied_is_403_with_the_decision_reason(http, secrets) -> None:
    tenant, app_secret, key = secrets
    other = await http.post(
        f"/v1/applications/{tenant.other_application_id}/event_types",
        headers={"authorization": f"Bearer {app_secret.secret}"},
    )
    assert other.status_code == 403
    assert other.json() == {
        "error": "forbidden",
        "reason": "resource_not_in_scope",
        "message": other.json()["message"],
    }
    headers = {"authorization": f"Bearer {key.secret}"}
    allowed = await http.get(f"/v1/applications/{tenant.application_id}/events/order.paid", headers=headers)
    assert allowed.status_code == 200
    filtered = await http.get(
        f"/v1/applications/{tenant.application_id}/events/user.created", headers=headers
    )
    assert filtered.status_code == 403
    assert filtered.json()["reason"] == "event_type_not_allowed"


async def test_e2_asgi_unrouted_paths_are_403_and_public_paths_pass(http, secrets) -> None:
    _, app_secret, _ = secrets
    headers = {"authorization": f"Bearer {app_secret.secret}"}
    for method, path in [
        ("GET", "/v1/unrouted"),
        ("GET", "/v1/applications/x/event_types"),
        ("POST", "/healthz/"),
    ]:
        response = await http.request(method, path, headers=headers)
        assert response.status_code == 403, (method, path)
        assert response.json()["reason"] == "route_not_configured"
    public = await http.get("/healthz", headers={"x-watchword-principal-id": "spoofed"})
    assert public.status_code == 200
    assert public.json() == {"principal": None, "kind": None, "decision_id": None, "headers": {}}


async def test_e2_asgi_watchword_down_is_503_fail_closed(secrets) -> None:
    tenant, app_secret, _ = secrets
    with FakeWatchword() as fake:
        down = fake.address
    middleware, client = make_app(down, deadline=1.0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url="http://api"
    ) as http:
        response = await http.post(
            f"/v1/applications/{tenant.application_id}/event_types",
            headers={"authorization": f"Bearer {app_secret.secret}"},
        )
    await client.close()
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert response.json()["reason"] == "authorization_unavailable"


async def test_e2_asgi_slow_watchword_is_503_within_the_deadline(secrets) -> None:
    tenant, _, _ = secrets
    with FakeWatchword() as fake:
        fake.hold(3.0)
        middleware, client = make_app(fake.address, deadline=0.3)
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            response = await http.get(f"/v1/applications/{tenant.application_id}/events/x")
        await client.close()
    assert response.status_code == 503


async def handshake(app: WatchwordMiddleware, path: str, headers: list[tuple[bytes, bytes]]) -> list[dict]:
    """Drive one websocket handshake through the ASGI app as a server would; returns what the app sent."""
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "scheme": "ws",
        "server": ("api", 80),
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        "state": {},
    }
    await app(scope, receive, send)
    return sent


async def test_e2_asgi_websocket_handshake_is_authorized_or_closed_1008(server, secrets) -> None:
    tenant, _, key = secrets
    middleware, client = make_app(server.address)
    path = f"/ws/applications/{tenant.application_id}/events/order.paid"
    allowed = await handshake(middleware, path, [(b"authorization", f"Bearer {key.secret}".encode())])
    assert [m["type"] for m in allowed] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert key.credential.id in allowed[1]["text"]
    refused = await handshake(middleware, path, [])
    assert refused == [{"type": "websocket.close", "code": 1008, "reason": "credential_missing"}]
    denied = await handshake(
        middleware,
        f"/ws/applications/{tenant.application_id}/events/user.created",
        [(b"authorization", f"Bearer {key.secret}".encode())],
    )
    assert denied == [{"type": "websocket.close", "code": 1008, "reason": "event_type_not_allowed"}]
    unrouted = await handshake(middleware, "/ws/else", [])
    assert unrouted[0]["code"] == 1008
    await client.close()
    with FakeWatchword() as fake:
        down = fake.address
    middleware, client = make_app(down, deadline=0.5)
    unavailable = await handshake(middleware, path, [(b"authorization", f"Bearer {key.secret}".encode())])
    assert unavailable[0]["code"] == 1013
    await client.close()


def test_e2_route_templates_are_checked() -> None:
    with pytest.raises(ValueError, match="whole segment"):
        Route("GET", "/v1/app-{id}", "event.list")
    with pytest.raises(ValueError, match="start with"):
        Route("GET", "v1", "event.list")
    with pytest.raises(ValueError, match="repeated"):
        Route("GET", "/{a}/{a}", "event.list")
    route = Route("post", "/v1/applications/{application_id}/event_types", "event_type.create")
    assert route.match("POST", "/v1/applications/app-1/event_types") == {"application_id": "app-1"}
    assert route.match("POST", "/v1/applications//event_types") is None
    assert route.match("GET", "/v1/applications/app-1/event_types") is None
    assert route.resource({"application_id": "app-1"}).application_id == "app-1"


async def test_e2_asgi_request_watchword_calls_malformed_is_400(http, secrets) -> None:
    """More headers than Watchword reads (max_request_headers, 256 by default): INVALID_ARGUMENT -> 400."""
    tenant, app_secret, _ = secrets
    headers = [("authorization", f"Bearer {app_secret.secret}")] + [
        (f"x-filler-{n}", "v") for n in range(300)
    ]
    response = await http.post(f"/v1/applications/{tenant.application_id}/event_types", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["reason"] == "field_invalid"
