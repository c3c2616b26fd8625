"""HTTP listeners answer keep-alive requests without Nagle's wait (found by the open-loop benchmark of #13:
every request after a connection's first waited 40 ms for the client's delayed ACK)."""

from __future__ import annotations

import socket

from watchword.listeners import tcp_listener


def test_accepted_http_connections_have_nagle_off() -> None:
    with (
        tcp_listener("127.0.0.1", 0) as listener,
        socket.create_connection(listener.getsockname(), timeout=5),
    ):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_shared_listeners_have_nagle_off_too() -> None:
    with tcp_listener("127.0.0.1", 0, shared=True) as listener:
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
