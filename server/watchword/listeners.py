"""Bounds on what clients can hold open on each listener: connections, idle time, header size, and
the process's file descriptors they all draw from.

Idle or slowloris connections to one port must not starve the others: with no bound, a few thousand
idle HTTP connections used up the open-file limit, the gRPC port could accept nothing (health checks
timed out) and every failed accept logged a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from watchword.https import ClientCertificateScope

log = logging.getLogger("watchword.listeners")

# File descriptors kept for everything but client connections: the store's pool, the audit and log
# files, JWKS and token fetches, the metrics port.
RESERVED_DESCRIPTORS = 128
# The HTTP request line and headers together (uvicorn's h11 default, stated here on purpose).
MAX_HEADER_BYTES = 16 * 1024
# The E4 ext_authz port (ext_authz/http_server.py): Envoy's default max_request_headers_kb (60 KiB), the
# path prefix and some slack; a smaller bound would answer such requests 400 instead of deciding them.
ENVOY_MAX_HEADER_BYTES = 64 * 1024
# Connections waiting to be accepted on the HTTP port (also how many asyncio accepts in one go).
ACCEPT_BACKLOG = 64
# gRPC: concurrent calls on one connection (the replica-wide bound is max_concurrent_rpcs).
MAX_STREAMS_PER_CONNECTION = 128
# gRPC: a connection with no call for this long is closed (GOAWAY; clients reconnect when needed).
GRPC_MAX_IDLE_MS = 300_000
# gRPC: a connection that has not finished its HTTP/2 handshake (or TLS) after this long is closed.
GRPC_HANDSHAKE_TIMEOUT_MS = 10_000


# gRPC with several worker processes on one port: the kernel (SO_REUSEPORT) gives each new
# connection to one worker, and an HTTP/2 connection (Envoy keeps one per upstream host and thread) stays
# there. A connection is recycled after about WORKER_CONNECTION_AGE_MS (grpc adds +-10% jitter; GOAWAY,
# calls in flight get the grace to finish), so the client reconnects and lands on a worker anew.
WORKER_CONNECTION_AGE_MS = 30_000
WORKER_CONNECTION_AGE_GRACE_MS = 10_000
# One process alone on its gRPC port: grpc turns SO_REUSEPORT on by default, which would let a second
# server started on the same port by mistake share it silently instead of failing to start.
GRPC_EXCLUSIVE_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.so_reuseport", 0),)
GRPC_WORKER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.so_reuseport", 1),
    ("grpc.max_connection_age_ms", WORKER_CONNECTION_AGE_MS),
    ("grpc.max_connection_age_grace_ms", WORKER_CONNECTION_AGE_GRACE_MS),
)


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (what the operator allowed) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %s to %s: %s", soft, hard, exc)
    return soft


def open_file_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_bound(max_connections: int, open_files: int, ports: int = 2) -> int:
    """Connections each port may hold: at most `max_connections`, and the `ports` together (gRPC, HTTP,
    and the E4 ext_authz HTTP port when on) must leave RESERVED_DESCRIPTORS free under the open-file limit."""
    fits = max((open_files - RESERVED_DESCRIPTORS) // ports, 16)
    if fits < max_connections:
        log.warning(
            "the open-file limit (%s) allows %s connections per port, not max_connections=%s; raise the "
            "limit (ulimit -n, LimitNOFILE) to serve more",
            open_files,
            fits,
            max_connections,
        )
    return min(max_connections, fits)


def tcp_listener(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A bound listening TCP socket for an HTTP listener. `shared` sets SO_REUSEPORT, so that several
    worker processes of one replica can listen on the same port (the kernel spreads connections among
    them); off otherwise, so that a port already in use stops the start instead of being shared by mistake.
    Nagle is off on every accepted connection (they inherit it from the listener): asyncio turns it off
    only on sockets made with proto IPPROTO_TCP, which `create_server` does not set, and with Nagle on an
    answer written in two parts (headers, then body) waits for the client's delayed ACK, 40 ms on Linux,
    on every request of a keep-alive connection but the first."""
    listener = socket.create_server((host, port), reuse_port=shared, backlog=ACCEPT_BACKLOG)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def reserve_port(host: str, port: int) -> socket.socket:
    """A SO_REUSEPORT socket bound to (host, port) but not listening: it keeps the port (a concrete one
    when `port` is 0) for the worker processes, which listen on it with SO_REUSEPORT too; a socket that is
    not listening is never handed a connection. Raises OSError when another program holds the port."""
    # First without SO_REUSEPORT: a port some other process listens on (even with SO_REUSEPORT) is in use.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserved.bind((host, port))
    except OSError:
        reserved.close()
        raise
    return reserved


def grpc_options(max_connections: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_allowed_incoming_connections", max_connections),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        ("grpc.max_connection_idle_ms", GRPC_MAX_IDLE_MS),
        ("grpc.server_handshake_timeout_ms", GRPC_HANDSHAKE_TIMEOUT_MS),
    ]


class ConnectionBounds:
    """The two bounds uvicorn's HTTP protocol lacks (mixed in before the protocol): a
    connection past `limit_concurrency` is closed at once (uvicorn would keep it and answer 503 to each
    request), and a connection must send a whole request header within `timeout_keep_alive` of
    connecting (uvicorn waits for ever)."""

    limit_concurrency: int | None
    connections: set[Any]
    timeout_keep_alive: float
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # One below uvicorn's own bound, which answers 503 to every request once it is reached.
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency - 1:
            transport.abort()  # nothing was read: nothing to answer, no descriptor kept
            return
        super().connection_made(transport)  # type: ignore[misc]
        self._first_request_timer = self.loop.call_later(self.timeout_keep_alive, self._no_request_in_time)

    def _no_request_in_time(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            log.debug("closing a connection that sent no whole request header in time")
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_first_request_timer", None)
        if timer is not None:
            timer.cancel()
        if self in self.connections or getattr(self, "transport", None) is not None:
            super().connection_lost(exc)  # type: ignore[misc]


class BoundedH11Protocol(ConnectionBounds, H11Protocol):
    """uvicorn's h11 protocol, bounded; h11 bounds the header size (`h11_max_incomplete_event_size`)."""


class BoundedTlsH11Protocol(ConnectionBounds, ClientCertificateScope, H11Protocol):
    """The same on a TLS listener, with the client's certificate in each request's scope (C10)."""


def uvicorn_options(max_connections: int, idle_seconds: float, tls: bool = False) -> dict[str, Any]:
    return {
        "http": BoundedTlsH11Protocol if tls else BoundedH11Protocol,
        "limit_concurrency": max_connections + 1,
        "timeout_keep_alive": idle_seconds,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        # asyncio accepts up to `backlog` connections in one go, before any is counted: uvicorn's 2048
        # let a burst of idle clients take every descriptor at once.
        "backlog": ACCEPT_BACKLOG,
    }
