"""AsyncWatchwordClient: the asyncio client (grpc.aio). One channel per client, opened on first use in
the running event loop, so a client may be built before the loop starts (e.g. by an ASGI app)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from watchword_client import convert
from watchword_client._generated import auth_pb2, auth_pb2_grpc
from watchword_client.channel import DEFAULT_DEADLINE_SECONDS, ChannelSettings, channel_settings
from watchword_client.errors import NotFound, deadline_exceeded, from_rpc_error
from watchword_client.retry import RetryPolicy
from watchword_client.types import (
    Authorization,
    AuthorizeEntry,
    Credential,
    Grant,
    HealthStatus,
    IssuedToken,
    OutboundError,
    Principal,
    Refusal,
    Resource,
    SignedHeaders,
    TokenError,
)


class AsyncWatchwordClient:
    """The asyncio twin of `WatchwordClient`: same arguments, same methods, awaited.

    Use it from one event loop; `await client.close()` (or `async with`) when done.
    """

    def __init__(
        self,
        target: str,
        *,
        tls: bool = False,
        root_ca_file: str | Path | None = None,
        channel_credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        retry: RetryPolicy | None = None,
        options: tuple[tuple[str, object], ...] = (),
    ) -> None:
        self._settings: ChannelSettings = channel_settings(
            target,
            tls=tls,
            root_ca_file=root_ca_file,
            channel_credentials=channel_credentials,
            token=token,
            deadline=deadline,
            retry=retry,
            options=options,
        )
        self._channel: grpc.aio.Channel | None = None
        self._auth: auth_pb2_grpc.AuthServiceStub | None = None
        self._health: health_pb2_grpc.HealthStub | None = None

    @property
    def target(self) -> str:
        return self._settings.target

    def _stubs(self) -> tuple[auth_pb2_grpc.AuthServiceStub, health_pb2_grpc.HealthStub]:
        if self._auth is None or self._health is None:
            self._channel = self._settings.aio_channel()
            self._auth = auth_pb2_grpc.AuthServiceStub(self._channel)
            self._health = health_pb2_grpc.HealthStub(self._channel)
        return self._auth, self._health

    async def close(self) -> None:
        channel, self._channel, self._auth, self._health = self._channel, None, None, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(
        self, method: Callable[..., Awaitable[Any]], request: object, deadline: float | None
    ) -> Any:
        policy = self._settings.retry
        budget = deadline if deadline is not None else self._settings.deadline
        end = time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise deadline_exceeded(f"no answer within {budget:g} s ({attempt - 1} attempts)")
            try:
                return await method(request, timeout=remaining, metadata=self._settings.metadata)
            except grpc.aio.AioRpcError as error:
                pause = policy.delay(attempt)
                if not policy.should_retry(error.code(), attempt) or time.monotonic() + pause >= end:
                    raise from_rpc_error(error) from None
                await asyncio.sleep(pause)

    async def authenticate(
        self, credential: Credential, *, deadline: float | None = None
    ) -> Principal | Refusal:
        """Who is this? A `Principal`, or a `Refusal` with its reason (an answer, not an exception)."""
        request = auth_pb2.AuthenticateRequest(credential=convert.credential_to_proto(credential))
        return convert.authenticate_result(await self._call(self._stubs()[0].Authenticate, request, deadline))

    async def authorize(
        self,
        credential: Credential,
        action: str,
        resource: Resource | None = None,
        *,
        deadline: float | None = None,
    ) -> Authorization:
        """Authenticate and decide one action in one round trip."""
        request = convert.authorize_request(credential, action, resource or Resource())
        response = await self._call(self._stubs()[0].Authorize, request, deadline)
        return convert.authorization_from_proto(response)

    async def authorize_batch(
        self, entries: Sequence[AuthorizeEntry], *, deadline: float | None = None
    ) -> list[Authorization]:
        """Many decisions, each with its own credential (T7); results in the order of `entries`."""
        request = auth_pb2.AuthorizeBatchRequest(
            entries=[convert.authorize_request(e.credential, e.action, e.resource) for e in entries]
        )
        response = await self._call(self._stubs()[0].AuthorizeBatch, request, deadline)
        return [convert.authorization_from_proto(result) for result in response.results]

    async def issue_token(
        self,
        grant: Grant,
        *,
        scope: str = "",
        requested_lifetime_seconds: int = 0,
        audience: str = "",
        deadline: float | None = None,
    ) -> IssuedToken | TokenError:
        """Mint a token with one of the three grants (I1, I2, I3)."""
        request = convert.grant_to_request(grant, scope, requested_lifetime_seconds, audience)
        return convert.token_result(await self._call(self._stubs()[0].IssueToken, request, deadline))

    async def sign_outbound(
        self,
        outbound_credential_id: str,
        *,
        method: str,
        url: str,
        body: bytes,
        message_id: str = "",
        previous_token_rejected: bool = False,
        deadline: float | None = None,
    ) -> SignedHeaders | OutboundError:
        """The headers an outbound webhook must carry (needs a caller `token` on the client)."""
        request = auth_pb2.SignOutboundRequest(
            outbound_credential_id=outbound_credential_id,
            method=method,
            url=url,
            body=body,
            message_id=message_id,
            previous_token_rejected=previous_token_rejected,
        )
        return convert.sign_result(await self._call(self._stubs()[0].SignOutbound, request, deadline))

    async def health(self, service: str = "", *, deadline: float | None = None) -> HealthStatus:
        """grpc.health.v1 status of the server ("") or of one service."""
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            response = await self._call(self._stubs()[1].Check, request, deadline)
        except NotFound:
            return HealthStatus.SERVICE_UNKNOWN
        return HealthStatus(response.status)
