"""E4: the HTTP ext_authz port of a real `watchword serve`: the bounds it shares with the OAuth port (header
size, connections, idle clients; see also test_listener_abuse.py), its settings, and SIGTERM letting the
checks in flight finish."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from watchword import config
from watchword.listeners import ENVOY_MAX_HEADER_BYTES

from support.envoy import write_config
from support.jwks_server import JwksServer
from support.server import WatchwordProcess

IDLE_SECONDS = 1.0
MAX_CONNECTIONS = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    directory = tmp_path_factory.mktemp("e4")
    env = {
        "WATCHWORD_EXT_AUTHZ_HTTP_PORT": "0",
        "WATCHWORD_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS),
        "WATCHWORD_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    config_file = write_config(directory)
    with WatchwordProcess(directory / "data", env=env, args=["--config", str(config_file)]) as process:
        yield process


def check_url(server: WatchwordProcess, path: str = "/v1/applications/app-1") -> str:
    return f"http://127.0.0.1:{server.ext_authz_http_port}{path}"


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_e4_the_port_is_announced_before_the_last_line(server) -> None:
    lines = "".join(server.output)
    assert server.ext_authz_http_port
    assert lines.index("watchword ext_authz http listening on") < lines.index("watchword listening on")


def test_e4_the_audited_peer_is_the_connection_not_a_forwarded_for_header(server) -> None:
    """As in gRPC mode the peer is Envoy's connection: a client-supplied X-Forwarded-For (which an Envoy
    that forwards it would pass on) never rewrites the address the audit record keeps."""
    request_id = "e4-peer-0123456789"
    headers = {"x-forwarded-for": "203.0.113.9", "x-request-id": request_id}
    assert httpx.get(check_url(server), headers=headers, timeout=5).status_code == 401  # no credential
    deadline = time.monotonic() + 5
    while not (records := [line for line in server.output if request_id in line]):
        assert time.monotonic() < deadline, "no audit record for the check"
        time.sleep(0.05)
    record = json.loads(records[0])
    assert record["peer"].startswith("127.0.0.1:")
    assert "203.0.113.9" not in records[0]


def test_e4_headers_up_to_envoys_bound_are_decided_and_larger_ones_refused_with_400(server) -> None:
    decided = httpx.get(check_url(server), headers={"authorization": "Bearer " + "x" * 20_000}, timeout=5)
    assert decided.status_code == 401
    huge = {"x-padding": "p" * (ENVOY_MAX_HEADER_BYTES + 1)}
    refused = httpx.get(check_url(server), headers=huge, timeout=5)
    assert refused.status_code == 400
    assert refused.headers.get("connection") == "close"


def test_e4_a_connection_that_sends_no_whole_header_in_time_is_closed(server) -> None:
    address = ("127.0.0.1", server.ext_authz_http_port)
    with socket.create_connection(address) as silent, socket.create_connection(address) as slow:
        slow.sendall(b"GET /v1/applications/a HTTP/1.1\r\nHost: x\r\n")
        assert closed_by_server(silent, IDLE_SECONDS + 2)
        assert closed_by_server(slow, 2)


def test_e4_connections_past_the_bound_are_closed_at_once_and_the_port_recovers(server) -> None:
    held = [
        socket.create_connection(("127.0.0.1", server.ext_authz_http_port)) for _ in range(MAX_CONNECTIONS)
    ]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", server.ext_authz_http_port)) as extra:
            assert closed_by_server(extra, 0.5)
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(check_url(server), timeout=5).status_code == 401


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHWORD_PORT": "7000", "WATCHWORD_EXT_AUTHZ_HTTP_PORT": "7000"}, "ext_authz_http_port (7000)"),
        ({"WATCHWORD_EXT_AUTHZ_HTTP_PATH_PREFIX": "/check/"}, "ext_authz_http_path_prefix"),
        ({"WATCHWORD_EXT_AUTHZ_HTTP_PATH_PREFIX": "check"}, "ext_authz_http_path_prefix"),
        ({"WATCHWORD_EXT_AUTHZ_HTTP_PORT": "70000"}, "ext_authz_http_port"),
    ],
)
def test_e4_bad_settings_are_explained(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(config.ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        config.load(environ=environ)


def test_e4_settings_default_to_off_and_take_a_prefix() -> None:
    assert config.load(environ={}).ext_authz_http_port is None
    settings = config.load(environ={"WATCHWORD_EXT_AUTHZ_HTTP_PATH_PREFIX": "/ext_authz/v1"})
    assert settings.ext_authz_http_path_prefix == "/ext_authz/v1"


SLOW_CHECKS = 4
JWKS_DELAY = 2.0


def test_e4_sigterm_lets_every_http_check_in_flight_finish(tmp_path: Path) -> None:
    with JwksServer(algorithms=("ES256",)) as idp:
        settings = (
            "ext_authz_http_port = 0\n"
            f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\njwks_uri = "{idp.jwks_uri}"\n'
            "allow_insecure_http = true\n"
        )
        server = WatchwordProcess(tmp_path / "data", args=["--config", str(write_config(tmp_path, settings))])
        server.start()
        try:
            # Slow checks: a kid the issuer has just published, fetched from an issuer that answers slowly.
            new_key = idp.add_key("ES256")
            idp.set(delay_seconds=JWKS_DELAY)
            now = int(time.time())
            claims = {"iss": idp.issuer, "aud": "api", "sub": "u-1", "iat": now, "exp": now + 300, "org": "o"}
            headers = {"authorization": f"Bearer {idp.sign(claims, new_key)}"}
            fetches_before = idp.jwks_requests
            url = check_url(server, "/v1/organizations/o")
            outcomes: list[str] = []
            stop = threading.Event()

            def hammer() -> None:  # checks without a credential, before, during and after the drain
                while not stop.is_set():
                    try:
                        answer = httpx.get(url, timeout=5)
                        outcomes.append(f"{answer.status_code} {answer.json()['reason']}")
                    except httpx.TransportError:  # the listener is closed (or closing: a reset, no answer)
                        outcomes.append("refused")
                        return

            with ThreadPoolExecutor(max_workers=SLOW_CHECKS + 1) as pool:
                hammering = pool.submit(hammer)
                slow = [pool.submit(httpx.get, url, headers=headers, timeout=20) for _ in range(SLOW_CHECKS)]
                deadline = time.monotonic() + 5
                while idp.jwks_requests == fetches_before and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.3)  # every slow check has reached the server and waits on the fetch
                assert not any(f.done() for f in slow), "the slow checks finished before the signal"
                signalled_at = time.monotonic()
                server.signal(signal.SIGTERM)
                answers = [f.result(timeout=30) for f in slow]
                exit_code = server.wait(30)
                exited_after = time.monotonic() - signalled_at
                stop.set()
                hammering.result(timeout=10)
        finally:
            server.stop()
    # Decided (the user is no member of organization "o"), not cut off and not a 503.
    assert {answer.status_code for answer in answers} == {403}, [a.text for a in answers]
    assert exit_code == 0, "".join(server.output)
    assert exited_after < JWKS_DELAY + 8, exited_after
    # Before: decided; during the drain: refused with the reason to retry elsewhere; after: no listener.
    assert set(outcomes) <= {"401 credential_missing", "503 shutting_down", "refused"}, set(outcomes)
    assert {"401 credential_missing", "503 shutting_down"} <= set(outcomes), set(outcomes)
