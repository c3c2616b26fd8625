"""Abuse of the listeners (#8): clients that hang up, idle or crawl must cost a bounded amount and leave
health checks and Authorize answering in time, and the log small."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from watchword.v1 import auth_pb2, common_pb2

from support.server import WatchwordProcess
from support.tenants import API_KEY, create_credential, make_tenant

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


OPEN_FILES = 1024
IDLE_SECONDS = 2.0
ABUSERS = 2000
SLOWLORIS = 50


def _limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit")


def open_file_limit(soft: int, hard: int) -> Callable[[], None]:
    """Run in the server's process before it starts: the limits it is given."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return limit


def test_e3_the_soft_open_file_limit_is_raised_to_the_hard_one_at_start(tmp_path: Path) -> None:
    server = WatchwordProcess(tmp_path / "data", preexec_fn=open_file_limit(1024, 4096)).start()
    try:
        assert server.process is not None
        assert _limits(server.process.pid) == (4096, 4096)
    finally:
        server.stop()


def _descriptors(server: WatchwordProcess) -> int:
    assert server.process is not None
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def _timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


# The HTTP ports abused: the OAuth endpoints (uvicorn, h11), and E4's ext_authz listener (llhttp, its own).
ABUSED_PORTS = pytest.mark.parametrize("abused", ["http", "ext_authz_http"], ids=["e3-oauth", "e4-ext-authz"])


@ABUSED_PORTS
def test_e3_idle_and_slowloris_http_clients_cannot_starve_grpc(tmp_path: Path, abused: str) -> None:
    env = {
        "WATCHWORD_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS),
        "WATCHWORD_AUDIT_LOG_FILE": str(tmp_path / "audit.log"),  # the output is the server log alone
        "WATCHWORD_EXT_AUTHZ_HTTP_PORT": "0",
    }
    limit = open_file_limit(OPEN_FILES, OPEN_FILES)
    server = WatchwordProcess(tmp_path / "data", env=env, preexec_fn=limit).start()
    sockets: list[socket.socket] = []
    try:
        tenant = make_tenant(server)
        key = create_credential(
            server, kind=API_KEY, organization_id=tenant.organization_id, name="k", permissions=["event.list"]
        )
        request = auth_pb2.AuthorizeRequest(
            credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=key.secret)),
            action="event.list",
            resource=auth_pb2.Resource(application_id=tenant.application_id, event_type="a.b"),
        )
        health = health_pb2_grpc.HealthStub(server.channel())
        logged_before = len(server.output)
        baseline = _descriptors(server)
        port = server.http_port if abused == "http" else server.ext_authz_http_port
        for _ in range(ABUSERS):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            sockets.append(sock)
        time.sleep(0.5)
        timings: list[float] = []
        for sock in sockets[:SLOWLORIS]:
            with contextlib.suppress(OSError):
                sock.send(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n")
        # Under the abuse, on a channel of its own (a new connection must be accepted too).
        with grpc.insecure_channel(server.address) as fresh:
            fresh_health = health_pb2_grpc.HealthStub(fresh)
            check = health_pb2.HealthCheckRequest()
            for _ in range(5):
                timings.append(_timed(lambda: fresh_health.Check(check, timeout=1)))
                timings.append(_timed(lambda: health.Check(check, timeout=1)))
                timings.append(_timed(lambda: server.auth().Authorize(request, timeout=1)))
                for sock in sockets[:SLOWLORIS]:  # one header byte at a time, never finishing
                    with contextlib.suppress(OSError):
                        sock.send(b"X")
                time.sleep(0.2)
        descriptors = _descriptors(server)
        # Every connection the server accepted is closed after the idle timeout, the ones it had no room
        # for at once. (Connections the kernel never handed over look open from here: they cost nothing.)
        deadline = time.monotonic() + 6 * IDLE_SECONDS + 5
        while (left := _descriptors(server) - baseline) > 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        log = "".join(server.output[logged_before:])
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    print(f"{descriptors} descriptors open under abuse, {left} more than before it after the idle timeout")
    print(f"{len(log)} bytes logged")
    assert descriptors < OPEN_FILES * 3 // 4  # the connection bound, not the open-file limit, decided
    print(f"slowest health check or Authorize: {max(timings):.3f}s")
    assert max(timings) < 1.0
    assert left <= 5
    assert len(log) < 16 * 1024, log[-4000:]
    assert "Traceback" not in log
