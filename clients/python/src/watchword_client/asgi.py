"""WatchwordMiddleware: every HTTP request and websocket handshake is authorized by one Authorize call.

Pure ASGI, no framework needed. On allow, the typed `Principal` is put in `scope["state"]` under
`watchword_principal` (Starlette: `request.state.watchword_principal`), the `Decision` under
`watchword_decision`, its id (the one in Watchword's audit record) under `watchword_decision_id`, and
the `x-watchword-*` headers the application receives are Watchword's (any the client sent are
removed first). Otherwise the request never reaches the application:

- 401 + `WWW-Authenticate` when the credential is missing or refused (Basic for a Basic credential,
  else Bearer with `error="invalid_token"` for a refused one, RFC 6750 §3.1),
- 403 when the decision denies, or no route matches (`route_not_configured`),
- 400 when Watchword calls the request itself malformed (INVALID_ARGUMENT, e.g. too many headers),
- 503 when Watchword cannot answer (down, overloaded, too slow, faulty): fail closed.

Bodies are `{"error", "reason", "message"}` JSON. A websocket handshake that is not allowed is closed
with 1008 (policy violation), or 1013 (try again later) when Watchword cannot answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from watchword_client.async_client import AsyncWatchwordClient
from watchword_client.errors import InvalidRequest, WatchwordError
from watchword_client.routes import Route, RouteTable
from watchword_client.types import Authorization, HttpCredential, Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PRINCIPAL_KEY = "watchword_principal"
DECISION_KEY = "watchword_decision"
DECISION_ID_KEY = "watchword_decision_id"
HEADER_PREFIX = b"x-watchword-"
DEFAULT_CHALLENGE = 'Bearer realm="watchword"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="watchword", error="invalid_token"'
BASIC_CHALLENGE = 'Basic realm="watchword"'
WEBSOCKET_POLICY_VIOLATION = 1008
WEBSOCKET_TRY_AGAIN_LATER = 1013

_log = logging.getLogger("watchword_client.asgi")


class _Refused(Exception):
    """An HTTP answer instead of the application."""

    def __init__(self, status: int, error: str, reason: str, message: str, challenge: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.body = json.dumps({"error": error, "reason": reason, "message": message}).encode()
        self.challenge = challenge


def challenge(reason: str, headers: Iterable[tuple[str, str]]) -> str:
    """The server's rule, for a refusal that came without a challenge (an older Watchword): the scheme
    the client used (Basic for Basic, else Bearer), and `error="invalid_token"` (RFC 6750 §3.1) when a
    credential was sent and refused."""
    for name, value in headers:
        if name.lower() == "authorization" and value.strip()[:6].lower() == "basic ":
            return BASIC_CHALLENGE
    return DEFAULT_CHALLENGE if reason == "credential_missing" else INVALID_TOKEN_CHALLENGE


def upstream_headers(principal: Principal) -> list[tuple[bytes, bytes]]:
    """What the application receives about the caller, in the shared E1/E2 header names."""
    values = {
        b"x-watchword-principal-id": principal.id,
        b"x-watchword-organization-id": principal.organization_id,
        b"x-watchword-credential-kind": principal.kind.name.lower(),
        b"x-watchword-credential-id": principal.credential_id,
    }
    return [(name, value.encode()) for name, value in values.items() if value]


class WatchwordMiddleware:
    """`WatchwordMiddleware(app, client=AsyncWatchwordClient(...), routes=[Route(...), ...])`.

    `deadline` bounds the Authorize call (default: the client's). Lifespan events pass through.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: AsyncWatchwordClient,
        routes: RouteTable | Iterable[Route],
        deadline: float | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.routes = routes if isinstance(routes, RouteTable) else RouteTable(routes)
        self.deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket"):
            raise RuntimeError(f"WatchwordMiddleware cannot guard ASGI scope type {scope['type']!r}")
        try:
            guarded = await self._authorize(scope)
        except _Refused as refused:
            if scope["type"] == "websocket":
                await _close_websocket(refused, receive, send)
            else:
                await _answer(refused, send)
            return
        await self.app(guarded, receive, send)

    async def _authorize(self, scope: Scope) -> Scope:
        # A websocket handshake is a GET; routes for websockets are written with method GET.
        method = "GET" if scope["type"] == "websocket" else scope["method"]
        path: str = scope["path"]
        headers = [(k, v) for k, v in scope.get("headers", ()) if not k.lower().startswith(HEADER_PREFIX)]
        found = self.routes.find(method, path)
        if found is None:
            raise _Refused(403, "forbidden", "route_not_configured", f"no route is configured for {method}")
        route, params = found
        if route.is_public:
            return {**scope, "headers": headers, "state": {**scope.get("state", {}), PRINCIPAL_KEY: None}}
        assert route.action is not None
        credential = HttpCredential(
            method=method,
            path=path,
            headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
            query=scope.get("query_string", b"").decode("latin-1"),
        )
        result = await self._ask(credential, route.action, route.resource(params))
        principal = result.principal
        if result.refusal is not None or principal is None:
            refusal = result.refusal
            reason = refusal.reason if refusal else result.decision.reason
            raise _Refused(
                401,
                "unauthenticated",
                reason,
                refusal.message if refusal else result.decision.message,
                (refusal.www_authenticate if refusal else "") or challenge(reason, credential.headers),
            )
        if not result.allowed:
            raise _Refused(403, "forbidden", result.decision.reason, result.decision.message)
        state = {
            **scope.get("state", {}),
            PRINCIPAL_KEY: principal,
            DECISION_KEY: result.decision,
            DECISION_ID_KEY: result.decision_id,
        }
        return {**scope, "headers": headers + upstream_headers(principal), "state": state}

    async def _ask(self, credential: HttpCredential, action: str, resource: Any) -> Authorization:
        try:
            return await self.client.authorize(credential, action, resource, deadline=self.deadline)
        except InvalidRequest as error:
            raise _Refused(400, "invalid_request", error.reason or "request_invalid", error.message) from None
        except WatchwordError as error:
            _log.warning("Watchword could not authorize a request: %s %s", error.code, error.reason or "-")
            raise _Refused(
                503, "unavailable", "authorization_unavailable", "authorization is unavailable; retry later"
            ) from None


async def _answer(refused: _Refused, send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(refused.body)).encode())]
    if refused.challenge:
        headers.append((b"www-authenticate", refused.challenge.encode()))
    if refused.status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": refused.body})


async def _close_websocket(refused: _Refused, receive: Receive, send: Send) -> None:
    message = await receive()  # websocket.connect, before any answer may be sent
    if message.get("type") != "websocket.connect":
        return
    code = WEBSOCKET_TRY_AGAIN_LATER if refused.status >= 500 else WEBSOCKET_POLICY_VIOLATION
    await send({"type": "websocket.close", "code": code, "reason": str(refused)})
