"""WatchwordSigner: an httpx.Auth that proves outbound webhooks with the headers SignOutbound returns.

For each request it asks Watchword for the headers of one outbound credential, over the request's exact
method, URL and body bytes, and attaches them. When the endpoint answers 401, it asks again with
`previous_token_rejected` (Watchword drops its cached token and fetches a fresh one, O3/O4) and retries
the request once, under the same message id (Standard Webhooks `webhook-id`), so that the receiver can
recognise the delivery. An OutboundError raises `OutboundSigningError`: nothing is sent unsigned.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, Generator

import httpx

from watchword_client.async_client import AsyncWatchwordClient
from watchword_client.client import WatchwordClient
from watchword_client.errors import OutboundSigningError
from watchword_client.types import OutboundError, SignedHeaders

MESSAGE_ID_HEADER = "webhook-id"


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


class WatchwordSigner(httpx.Auth):
    """`httpx.Client(auth=WatchwordSigner(credential_id, client=WatchwordClient(..., token=...)))`, or
    with `async_client=` for `httpx.AsyncClient`. The message id is the request's own `webhook-id` header
    when it has one (keep it across your delivery retries), else a fresh one per request."""

    requires_request_body = True

    def __init__(
        self,
        outbound_credential_id: str,
        *,
        client: WatchwordClient | None = None,
        async_client: AsyncWatchwordClient | None = None,
    ) -> None:
        if client is None and async_client is None:
            raise ValueError("give a WatchwordClient (client=) or an AsyncWatchwordClient (async_client=)")
        if not outbound_credential_id:
            raise ValueError("outbound_credential_id is required")
        self.outbound_credential_id = outbound_credential_id
        self._client = client
        self._async_client = async_client

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._client is None:
            raise RuntimeError("this WatchwordSigner has no sync WatchwordClient (client=)")
        message_id = request.headers.get(MESSAGE_ID_HEADER) or new_message_id()
        first = self._client.sign_outbound(**self._arguments(request, message_id, rejected=False))
        attached = _attach(request, first, ())
        response = yield request
        if response.status_code != 401:
            return
        response.read()
        again = self._client.sign_outbound(**self._arguments(request, message_id, rejected=True))
        _attach(request, again, attached)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._async_client is None:
            raise RuntimeError("this WatchwordSigner has no AsyncWatchwordClient (async_client=)")
        message_id = request.headers.get(MESSAGE_ID_HEADER) or new_message_id()
        first = await self._async_client.sign_outbound(**self._arguments(request, message_id, rejected=False))
        attached = _attach(request, first, ())
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        again = await self._async_client.sign_outbound(**self._arguments(request, message_id, rejected=True))
        _attach(request, again, attached)
        yield request

    def _arguments(self, request: httpx.Request, message_id: str, *, rejected: bool) -> dict[str, object]:
        return {
            "outbound_credential_id": self.outbound_credential_id,
            "method": request.method,
            "url": str(request.url),
            "body": request.content,
            "message_id": message_id,
            "previous_token_rejected": rejected,
        }


def _attach(
    request: httpx.Request, signed: SignedHeaders | OutboundError, previous: tuple[str, ...]
) -> tuple[str, ...]:
    """Put the signed headers on the request (replacing the ones of a previous attempt)."""
    if isinstance(signed, OutboundError):
        raise OutboundSigningError(signed)
    for name in previous:
        request.headers.pop(name, None)
    for name, value in signed.headers:
        request.headers[name] = value
    return tuple(name for name, _ in signed.headers)
