"""E1/E4 with issue #8's deployment: a shipped Envoy example in front of THREE Watchword replicas sharing one
PostgreSQL database; every request is decided, and Envoy spreads the checks over all the replicas. The same
three replicas serve both front doors: gRPC mode (E1) and HTTP mode (E4) each get their own Envoy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.envoy import (
    CLUSTERS,
    HTTP_MODE_SETTINGS,
    EchoUpstream,
    EnvoyProcess,
    example_config,
    write_config,
)
from support.server import WatchwordProcess
from support.shared_database import shared_database_settings
from support.tenants import APPLICATION_SECRET, create_credential, make_tenant

REQUESTS = 30


@dataclass(frozen=True)
class Replicas:
    servers: list[WatchwordProcess]
    application_id: str
    other_application_id: str
    secret: str


@pytest.fixture(scope="module")
def replicas(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    tmp_path = tmp_path_factory.mktemp("replicas")
    env = shared_database_settings(postgres, f"e1_{uuid.uuid4().hex[:8]}", tmp_path)
    config = ["--config", str(write_config(tmp_path, HTTP_MODE_SETTINGS))]
    servers = [WatchwordProcess(tmp_path / f"data{index}", env=env, args=config) for index in range(3)]
    try:
        for replica in servers:
            replica.start()
        first = next(replica for replica in servers if replica.admin_token)
        tenant = make_tenant(first, "replicas")
        secret = create_credential(
            first, kind=APPLICATION_SECRET, organization_id=tenant.organization_id,
            application_id=tenant.application_id, name="lb",
        ).secret  # fmt: skip
        yield Replicas(servers, tenant.application_id, tenant.other_application_id, secret)
    finally:
        for replica in servers:
            replica.stop()


@pytest.mark.parametrize("mode", ["grpc", "http"], ids=["e1-grpc", "e4-http"])
def test_e1_envoy_load_balances_check_calls_over_three_replicas_on_postgresql(
    replicas: Replicas, tmp_path: Path, mode: str
) -> None:
    ports = [replica.port if mode == "grpc" else replica.ext_authz_http_port for replica in replicas.servers]
    cluster = CLUSTERS[mode]
    with (
        EchoUpstream() as upstream,
        EnvoyProcess(example_config(ports, upstream.port, mode), tmp_path / "envoy") as envoy,
    ):
        envoy.wait_healthy(cluster, 3)
        before = {port: host["stats"].get("rq_total", 0) for port, host in envoy.hosts(cluster).items()}
        url = envoy.url(f"/v1/applications/{replicas.application_id}/event_types")
        bearer = {"authorization": f"Bearer {replicas.secret}"}
        with httpx.Client(timeout=10) as client:
            statuses = [client.post(url, headers=bearer).status_code for _ in range(REQUESTS)]
            foreign_url = envoy.url(f"/v1/applications/{replicas.other_application_id}/event_types")
            foreign = client.post(foreign_url, headers=bearer)
        assert statuses == [200] * REQUESTS
        assert foreign.status_code == 403
        after = {port: host["stats"].get("rq_total", 0) for port, host in envoy.hosts(cluster).items()}
        spread = {port: after[port] - before[port] for port in ports}
        assert sum(spread.values()) >= REQUESTS
        # Round robin: each replica decided about a third of the requests.
        assert all(count >= REQUESTS // 6 for count in spread.values()), spread
