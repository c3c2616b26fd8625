"""Abuse of the listeners (#8): clients that hang up, idle or crawl must cost a bounded amount and leave
health checks and Authorize answering in time, and the log small."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from support.server import WatchwordProcess

TRUNCATED_BODY = (
    b"POST /oauth/token HTTP/1.1\r\nHost: watchword\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type="
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    with WatchwordProcess(tmp_path_factory.mktemp("abuse") / "data") as process:
        yield process


def wait_for_line(server: WatchwordProcess, since: int, text: str, count: int, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logged = "".join(server.output[since:])
        if logged.count(text) >= count:
            return logged
        time.sleep(0.05)
    return "".join(server.output[since:])


def test_s8_a_client_hanging_up_mid_body_is_an_info_line_without_traceback(server) -> None:
    since = len(server.output)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.http_port)) as client:
            client.sendall(TRUNCATED_BODY)
            time.sleep(0.1)
    logged = wait_for_line(server, since, "client disconnected", 3)
    assert logged.count("INFO watchword.http client disconnected") == 3, logged
    assert "Traceback" not in logged
    assert "ERROR" not in logged


def test_the_http_port_still_answers_after_clients_hung_up(server) -> None:
    answer = httpx.get(f"http://127.0.0.1:{server.http_port}/.well-known/jwks.json", timeout=5)
    assert answer.status_code == 200
