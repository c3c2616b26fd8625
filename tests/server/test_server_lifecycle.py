"""The server as an operator runs it: no configuration at all, restarts, TLS, health, SIGTERM (E3)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from watchword.crypto import master_key
from watchword.crypto.master_key import MasterKey, MasterKeyError
from watchword.issue import signing_keys
from watchword.store import database
from watchword.v1 import admin_pb2, admin_pb2_grpc

from support.certificates import loopback_certificate
from support.cli import refused_start
from support.server import WatchwordProcess

CLI = [sys.executable, "-m", "watchword.cli"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    env.update(extra)
    return env


def test_serve_with_no_configuration_creates_its_data_and_prints_the_admin_token_once(tmp_path: Path) -> None:
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    data = workdir / "watchword-data"
    first = WatchwordProcess(data)
    with first:
        assert first.admin_token.startswith("wwad_")
        keys = first.admin().ListSigningKeys(
            admin_pb2.ListSigningKeysRequest(), metadata=first.admin_metadata, timeout=10
        )
        assert [(k.algorithm, k.active) for k in keys.keys] == [("ES256", True)]
        assert "d" not in json.loads(keys.keys[0].public_jwk), "the private part must never be published"
    assert (data / "watchword.db").is_file()
    assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    second = WatchwordProcess(data)
    with second:
        assert second.admin_token == ""
        # The first token still works across the restart; the signing key was kept, not regenerated.
        again = second.admin().ListSigningKeys(
            admin_pb2.ListSigningKeysRequest(),
            metadata=(("authorization", f"Bearer {first.admin_token}"),),
            timeout=10,
        )
        assert [k.kid for k in again.keys] == [k.kid for k in keys.keys]
    assert sum("WATCHWORD_ADMIN_TOKEN=" in line for line in first.output + second.output) == 1
    logs = "".join(first.output + second.output)
    assert first.admin_token not in logs.replace(f"WATCHWORD_ADMIN_TOKEN={first.admin_token}", "")


def test_signing_keys_are_sealed_under_the_master_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with WatchwordProcess(data):
        pass
    with sqlite3.connect(data / "watchword.db") as connection:
        kid, sealed = connection.execute("SELECT kid, encrypted_private_key FROM signing_keys").fetchone()
    assert b"PRIVATE KEY" not in sealed
    purpose = signing_keys.sealing_purpose(kid)
    right = MasterKey.from_file(data / "master.key")
    assert b"BEGIN PRIVATE KEY" in right.open(sealed, purpose)
    with pytest.raises(MasterKeyError):
        MasterKey.from_text(master_key.generate(), "test").open(sealed, purpose)
    with pytest.raises(MasterKeyError):
        right.open(sealed, signing_keys.sealing_purpose("another-kid"))


def test_production_mode_refuses_to_start_without_a_master_key(tmp_path: Path) -> None:
    result = refused_start({"WATCHWORD_MODE": "production", "WATCHWORD_DATA_DIR": str(tmp_path / "d")})
    assert "production mode needs a master key" in result.stderr


def test_a_bad_master_key_file_is_explained(tmp_path: Path) -> None:
    key = tmp_path / "master.key"
    key.write_text("c2hvcnQta2V5LW9mLTE2Yg")  # base64url of 16 bytes
    result = refused_start({"WATCHWORD_MASTER_KEY_FILE": str(key), "WATCHWORD_DATA_DIR": str(tmp_path / "d")})
    assert "must be 32 bytes" in result.stderr


def test_e3_tls_serves_health_to_clients_that_trust_the_certificate(tmp_path: Path) -> None:
    cert, key = loopback_certificate(tmp_path)
    env = {"WATCHWORD_TLS_CERT_FILE": str(cert), "WATCHWORD_TLS_KEY_FILE": str(key)}
    with WatchwordProcess(tmp_path / "data", env=env) as server:
        assert any("(tls)" in line for line in server.output)
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(server.address) as plaintext, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=3)


def test_e3_health_answers_per_service(server) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel())
    for service in ("", "watchword.v1.AuthService", "watchword.v1.AdminService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_sigterm_lets_in_flight_calls_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with WatchwordProcess(data, env={"WATCHWORD_SHUTDOWN_GRACE_SECONDS": "20"}) as server:
        admin, md = server.admin(), server.admin_metadata
        admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="warm-up"), metadata=md, timeout=10)
        # Hold SQLite's write lock so the next admin write stays in flight (it waits on busy_timeout).
        blocker = sqlite3.connect(
            data / "watchword.db", timeout=10, isolation_level=None, check_same_thread=False
        )
        blocker.execute("BEGIN IMMEDIATE")
        in_flight = admin.CreateOrganization.future(
            admin_pb2.CreateOrganizationRequest(name="in-flight"), metadata=md, timeout=30
        )
        time.sleep(0.5)
        assert not in_flight.done()
        server.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.process.poll() is None, "the server must wait for the in-flight call"
        with grpc.insecure_channel(server.address) as fresh:
            # Draining: health says NOT_SERVING (load balancers stop sending), new calls are refused.
            health = health_pb2_grpc.HealthStub(fresh).Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as refused:
                admin_pb2_grpc.AdminServiceStub(fresh).CreateOrganization(
                    admin_pb2.CreateOrganizationRequest(name="late"), metadata=md, timeout=3
                )
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        threading.Timer(0.5, blocker.rollback).start()
        created = in_flight.result(timeout=20)
        assert created.name == "in-flight"
        assert server.wait(30) == 0
        blocker.close()
    with sqlite3.connect(data / "watchword.db") as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM organizations")}
    assert names == {"warm-up", "in-flight"}


def test_migrate_command_brings_the_schema_to_head(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "migrate"],
        env=_clean_env(WATCHWORD_DATA_DIR=str(tmp_path / "d")),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"database schema at revision {database.head_revision()}" in result.stdout


def test_a_grpc_port_another_watchword_serves_stops_the_start_with_a_message(tmp_path: Path) -> None:
    """grpc shares a port by default (SO_REUSEPORT): one process alone must own its port, so a second
    server started on the same port by mistake fails with a message instead of taking half the calls."""
    with WatchwordProcess(tmp_path / "first") as first:
        done = refused_start(
            {"WATCHWORD_DATA_DIR": str(tmp_path / "second"), "WATCHWORD_PORT": str(first.port)}
        )
    assert f"cannot listen on 127.0.0.1:{first.port}" in done.stderr
    assert "watchword listening" not in done.stdout
