"""SIGTERM under load (#8): the calls in flight when the signal arrives all finish OK; calls arriving
during the drain may be refused (UNAVAILABLE), never failed in any other way; the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_status import rpc_status

from watchword.api import errors
from watchword.v1 import auth_pb2, auth_pb2_grpc, common_pb2

from support.jwks_server import JwksServer
from support.server import WatchwordProcess
from support.tenants import API_KEY, create_credential, make_tenant

SLOW_CALLS = 8
JWKS_DELAY = 2.0
LOAD_WORKERS = 4


def _request(token: str) -> auth_pb2.AuthenticateRequest:
    return auth_pb2.AuthenticateRequest(
        credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token))
    )


def test_sigterm_under_load_lets_every_call_in_flight_finish(tmp_path: Path) -> None:
    with JwksServer(algorithms=("ES256",)) as idp:
        config = tmp_path / "watchword.toml"
        config.write_text(
            f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\njwks_uri = "{idp.jwks_uri}"\n'
            "allow_insecure_http = true\n"
        )
        server = WatchwordProcess(tmp_path / "data", args=["--config", str(config)]).start()
        try:
            tenant = make_tenant(server)
            key = create_credential(
                server, kind=API_KEY, organization_id=tenant.organization_id, name="load"
            ).secret
            # Slow calls: a kid the issuer has just published, fetched from an issuer that answers slowly.
            new_key = idp.add_key("ES256")
            idp.set(delay_seconds=JWKS_DELAY)
            now = int(time.time())
            claims = {"iss": idp.issuer, "aud": "api", "sub": "user-1", "iat": now, "exp": now + 300}
            slow_token = idp.sign(claims, new_key)
            fetches_before = idp.jwks_requests
            # Each call on a channel of its own: a drain must not depend on sharing one connection.
            channels = [grpc.insecure_channel(server.address) for _ in range(SLOW_CALLS + LOAD_WORKERS)]
            stubs = [auth_pb2_grpc.AuthServiceStub(channel) for channel in channels]
            load: list[tuple[float, float, str]] = []
            refusals: list[grpc.RpcError] = []
            stop = threading.Event()

            def drive(stub: auth_pb2_grpc.AuthServiceStub) -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        stub.Authenticate(_request(key), timeout=10)
                        answer = "OK"
                    except grpc.RpcError as exc:
                        answer = exc.code().name
                        refusals.append(exc)
                    load.append((started, time.monotonic(), answer))
                    if answer != "OK":
                        return  # the server is draining or gone: a client would go elsewhere now

            with ThreadPoolExecutor(max_workers=SLOW_CALLS + LOAD_WORKERS) as pool:
                slow = [
                    pool.submit(stubs[n].Authenticate, _request(slow_token), timeout=20)
                    for n in range(SLOW_CALLS)
                ]
                drivers = [pool.submit(drive, stub) for stub in stubs[SLOW_CALLS:]]
                deadline = time.monotonic() + 5
                while idp.jwks_requests == fetches_before and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.3)  # every slow call has reached the server and waits on the fetch
                assert not any(f.done() for f in slow), "the slow calls finished before the signal"
                signalled_at = time.monotonic()
                server.signal(signal.SIGTERM)
                results = [f.result(timeout=30) for f in slow]
                stop.set()
                for driver in drivers:
                    driver.result(timeout=30)
            exit_code = server.wait(30)
            exited_after = time.monotonic() - signalled_at
        finally:
            server.stop()
            for channel in channels:
                channel.close()
    assert all(r.principal.id == "user-1" for r in results), "a call in flight did not finish OK"
    assert exit_code == 0, "".join(server.output)
    assert exited_after < JWKS_DELAY + 8, exited_after
    before = [answer for started, finished, answer in load if finished < signalled_at]
    assert before
    assert set(before) == {"OK"}
    refused = {answer for _, _, answer in load} - {"OK"}
    assert refused <= {"UNAVAILABLE"}, refused
    # Refused by the drain itself, with the reason a client retries elsewhere on (not a broken call).
    assert any(errors.SHUTTING_DOWN in str(rpc_status.from_call(r)) for r in refusals), refusals  # type: ignore[arg-type]


HAMMERS = 8


def test_s8_a_draining_replica_refuses_with_unavailable_never_cancelled(tmp_path: Path) -> None:
    """Clients that keep calling through the whole drain, as a retrying client does: every refusal is
    UNAVAILABLE (retried by clients), even for the calls arriving while the gRPC server itself stops,
    where gRPC would cancel a call it had read but not yet handed out (CANCELLED is never retried)."""
    env = {"WATCHWORD_SHUTDOWN_GRACE_SECONDS": "2"}
    server = WatchwordProcess(tmp_path / "data", env=env).start()
    codes: list[str] = []
    stop = threading.Event()
    try:
        tenant = make_tenant(server)
        key = create_credential(server, kind=API_KEY, organization_id=tenant.organization_id, name="l").secret

        def hammer() -> None:
            with grpc.insecure_channel(server.address) as channel:
                stub = auth_pb2_grpc.AuthServiceStub(channel)
                while not stop.is_set():
                    try:
                        stub.Authenticate(_request(key), timeout=5)
                        codes.append("OK")
                    except grpc.RpcError as exc:
                        codes.append(exc.code().name)

        threads = [threading.Thread(target=hammer) for _ in range(HAMMERS)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        time.sleep(0.5)  # calls after the exit: refused by the client's own connection attempt
    finally:
        stop.set()
        server.stop()
    for thread in threads:
        thread.join(10)
    assert "OK" in codes
    assert set(codes) <= {"OK", "UNAVAILABLE"}, {code: codes.count(code) for code in set(codes)}
