"""E1 with issue #8's deployment: the shipped Envoy example in front of THREE Watchword replicas sharing one
PostgreSQL database; every request is decided, and Envoy spreads the Check calls over all the replicas."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from watchword.crypto.master_key import generate

from conftest import APPLICATION_SECRET, create_credential, make_tenant
from support.envoy import EchoUpstream, EnvoyProcess, example_config, write_config
from support.server import WatchwordProcess

REQUESTS = 30


def test_e1_envoy_load_balances_check_calls_over_three_replicas_on_postgresql(
    postgres, tmp_path: Path
) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(generate())
    env = {
        "WATCHWORD_DATABASE_URL": postgres.create_database(f"e1_{uuid.uuid4().hex[:8]}"),
        "WATCHWORD_MASTER_KEY_FILE": str(key_file),
    }
    clean = {name: value for name, value in os.environ.items() if not name.startswith("WATCHWORD_")}
    migrate = subprocess.run(
        [sys.executable, "-m", "watchword.cli", "migrate"],
        env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    config = ["--config", str(write_config(tmp_path))]
    replicas = [WatchwordProcess(tmp_path / f"data{index}", env=env, args=config) for index in range(3)]
    try:
        for replica in replicas:
            replica.start()
        first = next(replica for replica in replicas if replica.admin_token)
        tenant = make_tenant(first, "replicas")
        secret = create_credential(
            first, kind=APPLICATION_SECRET, organization_id=tenant.organization_id,
            application_id=tenant.application_id, name="lb",
        ).secret  # fmt: skip
        ports = [replica.port for replica in replicas]
        with (
            EchoUpstream() as upstream,
            EnvoyProcess(example_config(ports, upstream.port), tmp_path / "envoy") as envoy,
        ):
            envoy.wait_healthy("watchword", 3)
            before = {
                port: host["stats"].get("rq_total", 0) for port, host in envoy.hosts("watchword").items()
            }
            url = envoy.url(f"/v1/applications/{tenant.application_id}/event_types")
            with httpx.Client(timeout=10) as client:
                statuses = [
                    client.post(url, headers={"authorization": f"Bearer {secret}"}).status_code
                    for _ in range(REQUESTS)
                ]
                foreign_url = envoy.url(f"/v1/applications/{tenant.other_application_id}/event_types")
                foreign = client.post(foreign_url, headers={"authorization": f"Bearer {secret}"})
            assert statuses == [200] * REQUESTS
            assert foreign.status_code == 403
            after = {
                port: host["stats"].get("rq_total", 0) for port, host in envoy.hosts("watchword").items()
            }
            spread = {port: after[port] - before[port] for port in ports}
            assert sum(spread.values()) >= REQUESTS
            # Round robin: each replica decided about a third of the requests.
            assert all(count >= REQUESTS // 6 for count in spread.values()), spread
    finally:
        for replica in replicas:
            replica.stop()
