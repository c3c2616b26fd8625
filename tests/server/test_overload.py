"""Overload (#8): past `max_concurrent_rpcs` calls in flight, RESOURCE_EXHAUSTED (`overloaded`) at once;
the calls in flight finish; health checks keep answering SERVING; calls past their deadline get no work.

The slow calls are real: C1 tokens with a kid the issuer has just published make Watchword fetch the
JWKS, and the test's issuer answers that fetch slowly (every caller of that kid waits for the one fetch).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from watchword.api import errors
from watchword.v1 import auth_pb2, common_pb2

from support.jwks_server import JwksServer
from support.server import WatchwordProcess

BOUND = 4
JWKS_DELAY = 3.5


def _request(token: str) -> auth_pb2.AuthenticateRequest:
    return auth_pb2.AuthenticateRequest(
        credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token))
    )


def _reason(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no google.rpc.Status in {error}"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


def _claims(idp: JwksServer) -> dict[str, object]:
    now = int(time.time())
    return {"iss": idp.issuer, "aud": "api", "sub": "user-1", "iat": now, "exp": now + 300}


def _config(tmp_path: Path, idp: JwksServer) -> Path:
    config = tmp_path / "watchword.toml"
    config.write_text(
        f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\njwks_uri = "{idp.jwks_uri}"\n'
        "allow_insecure_http = true\nrefresh_min_interval_seconds = 1\n"
    )
    return config


@pytest.fixture
def slow_issuer_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    with JwksServer(algorithms=("ES256",)) as idp:
        env = {"WATCHWORD_MAX_CONCURRENT_RPCS": str(BOUND), "WATCHWORD_LOG_LEVEL": "DEBUG"}
        with WatchwordProcess(
            tmp_path / "data", env=env, args=["--config", str(_config(tmp_path, idp))]
        ) as ww:
            yield idp, ww


def test_past_the_bound_calls_are_refused_at_once_and_calls_in_flight_finish(slow_issuer_server) -> None:  # type: ignore[no-untyped-def]
    idp, server = slow_issuer_server
    auth = server.auth()
    health = health_pb2_grpc.HealthStub(server.channel())
    # The issuer publishes a new key and becomes slow: the first token with its kid starts a slow fetch.
    new_key = idp.add_key("ES256")
    idp.set(delay_seconds=JWKS_DELAY)
    fetches_before = idp.jwks_requests
    slow_token = idp.sign(_claims(idp), new_key)
    with ThreadPoolExecutor(max_workers=BOUND + 8) as pool:
        slow = [pool.submit(auth.Authenticate, _request(slow_token), timeout=20) for _ in range(BOUND)]
        deadline = time.monotonic() + 5
        while idp.jwks_requests == fetches_before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert idp.jwks_requests > fetches_before, "the slow fetch never started"
        time.sleep(0.4)  # the other slow calls reach the server and join the fetch
        flood_started = time.monotonic()
        refused: list[float] = []
        for _ in range(40):
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                auth.Authenticate(_request("wwak_unknown"), timeout=5)
            refused.append(time.monotonic() - started)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _reason(caught.value) == errors.OVERLOADED
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        flood_took = time.monotonic() - flood_started
        assert not any(future.done() for future in slow), (
            "the slow calls were not slow: the test proves nothing"
        )
        # Refused at once: not queued behind the slow calls.
        assert max(refused) < 0.5, refused
        assert flood_took < JWKS_DELAY
        for future in slow:
            assert future.result().principal.id == "user-1"
    # The bound is released: calls are worked on again.
    after = auth.Authenticate(_request(slow_token), timeout=5)
    assert after.principal.id == "user-1"


def test_health_checks_answer_during_a_flood_that_fills_the_bound(slow_issuer_server) -> None:  # type: ignore[no-untyped-def]
    idp, server = slow_issuer_server
    auth = server.auth()
    new_key = idp.add_key("ES256")
    idp.set(delay_seconds=JWKS_DELAY)
    slow_token = idp.sign(_claims(idp), new_key)
    stop = threading.Event()
    outcomes: list[grpc.StatusCode] = []

    def flood() -> None:
        while not stop.is_set():
            try:
                auth.Authenticate(_request(slow_token), timeout=10)
                outcomes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                outcomes.append(exc.code())

    health = health_pb2_grpc.HealthStub(server.channel())
    with ThreadPoolExecutor(max_workers=BOUND * 3) as pool:
        workers = [pool.submit(flood) for _ in range(BOUND * 3)]
        time.sleep(0.5)
        for _ in range(10):
            started = time.monotonic()
            status = health.Check(
                health_pb2.HealthCheckRequest(service="watchword.v1.AuthService"), timeout=2
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            assert time.monotonic() - started < 0.5
        stop.set()
        for worker in workers:
            worker.result(timeout=30)
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in outcomes
    assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(outcomes)


def test_calls_whose_deadline_has_passed_are_not_worked_on(slow_issuer_server) -> None:  # type: ignore[no-untyped-def]
    """Through the real server: calls sent with a 100 µs deadline mostly reach it already expired; the
    server drops those on entry (logged at DEBUG) instead of starting the slow key fetch they need."""
    idp, server = slow_issuer_server
    auth = server.auth()
    new_key = idp.add_key("ES256")
    idp.set(delay_seconds=JWKS_DELAY)
    token = idp.sign(_claims(idp), new_key)
    dropped = 0
    for _ in range(20):  # rounds: how many expired calls the server sees depends on timing
        for _ in range(25):
            with pytest.raises(grpc.RpcError) as caught:
                auth.Authenticate(_request(token), timeout=1e-4)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.1)  # the server's log lines reach the reader thread
        dropped = sum("deadline has passed" in line for line in server.output)
        if dropped:
            break
    assert dropped >= 1, "no expired call reached the server: the check was not exercised"
    # The same call with time to spare is worked on.
    assert auth.Authenticate(_request(token), timeout=10).principal.id == "user-1"
