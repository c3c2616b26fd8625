"""The HTTP listeners: uvicorn on the gRPC server's event loop with the bounds of listeners.py, and the
builder of the OAuth HTTP endpoints (token, introspection, revocation, JWKS, metadata)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

import uvicorn

from watchword import listeners
from watchword.compose.deciding import Answering
from watchword.compose.failures import StartupError, cannot_serve, on_close, reason
from watchword.compose.replica import Prepared
from watchword.config import Settings
from watchword.config import options as config_options
from watchword.http_api import (
    CLIENT_AUTH_METHODS,
    INTROSPECT_PATH,
    REVOKE_PATH,
    TLS_CLIENT_AUTH,
    TokenCheck,
    authorization_server_metadata,
    build_app,
)
from watchword.issue.introspection import IntrospectionEndpoint
from watchword.issue.revocation import RevocationEndpoint
from watchword.observe import tracing
from watchword.observe.decisions import Recorder


class Serving(Protocol):
    """A listener being served: where, and how to stop it (closing its connections)."""

    @property
    def port(self) -> int: ...

    async def stop(self) -> None: ...


@dataclass
class HttpServer:
    """One HTTP listener served by uvicorn on the same event loop as the gRPC server."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


def open_listener(stack: AsyncExitStack, what: str, host: str, port: int, shared: bool) -> socket.socket:
    """A bound listening socket (SO_REUSEPORT when `shared` by worker processes), closed on unwinding."""
    with cannot_serve(what, host, port):
        listener = listeners.tcp_listener(host, port, shared=shared)
    on_close(stack, f"the {what} socket", listener.close)
    return listener


def tls_context(
    what: str, build: Callable[[Settings], ssl.SSLContext | None], settings: Settings
) -> ssl.SSLContext | None:
    """A listener's TLS context (None: plaintext); a certificate, key or CA file that does not load stops
    the start with which listener and why."""
    try:
        return build(settings)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise StartupError(f"cannot set up TLS for {what}: {reason(exc)}") from None


async def serve_uvicorn(
    app: object,
    listener: socket.socket,
    settings: Settings,
    tls: ssl.SSLContext | None = None,
) -> HttpServer:
    """uvicorn on this event loop, with the bounds of listeners.py, serving `app` on `listener` (over
    `tls` when given, each request's scope carrying the client's certificate)."""
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        lifespan="off",
        access_log=False,
        ssl_context_factory=None if tls is None else lambda _config, _default: tls,
        **listeners.uvicorn_options(
            config_options.connections_per_port(settings), settings.idle_timeout_seconds, tls is not None
        ),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            await task  # raise the reason it stopped
            raise StartupError("the HTTP endpoints stopped during start")
        await asyncio.sleep(0.01)
    return HttpServer(server=server, task=task, port=listener.getsockname()[1])


async def build_oauth_http(
    stack: AsyncExitStack,
    settings: Settings,
    prepared: Prepared,
    answering: Answering,
    recorder: Recorder,
    shared_port: bool,
) -> HttpServer | None:
    """The OAuth HTTP endpoints (None: off)."""
    if not settings.http_enabled:
        return None
    tls = tls_context("the OAuth HTTP endpoints", config_options.oauth_http_tls, settings)
    listener = open_listener(stack, "OAuth HTTP", settings.http_host, settings.http_port, shared_port)
    port = listener.getsockname()[1]
    base = config_options.public_base_url(settings, port)
    metadata = authorization_server_metadata(
        issuer=settings.token_issuer,
        token_endpoint=config_options.public_token_endpoint(settings, port),
        jwks_uri=f"{base}/.well-known/jwks.json",
        scopes=sorted(prepared.catalogue.actions),
        signing_algorithm=settings.signing_algorithm,
        introspection_endpoint=f"{base}{INTROSPECT_PATH}",
        revocation_endpoint=f"{base}{REVOKE_PATH}",
        client_auth_methods=client_auth_methods(settings),
    )
    token_checks: dict[str, TokenCheck] = {
        INTROSPECT_PATH: IntrospectionEndpoint(answering.pipeline, recorder),
        REVOKE_PATH: RevocationEndpoint(answering.pipeline, recorder),
    }
    app = build_app(
        answering.grants, prepared.keyring.jwks, metadata, recorder, token_checks, answering.leak_reports
    )
    http = await serve_uvicorn(tracing.traced_asgi(app) if tracing.enabled else app, listener, settings, tls)
    on_close(stack, "the OAuth HTTP endpoints", http.stop)
    return http


def client_auth_methods(settings: Settings) -> tuple[str, ...]:
    """RFC 8414's `token_endpoint_auth_methods_supported`: C9's four, and RFC 8705 §2.1's PKI method
    where this port asks for client certificates (C10)."""
    asks = settings.http_tls and settings.http_tls_client_auth != "none"
    return (*CLIENT_AUTH_METHODS, TLS_CLIENT_AUTH) if asks else CLIENT_AUTH_METHODS
