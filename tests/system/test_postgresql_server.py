"""Watchword on PostgreSQL: migrate first, then serve; a database outage fails closed (UNAVAILABLE)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from grpc_status import rpc_status

from watchword import reasons
from watchword.crypto import master_key
from watchword.store import database
from watchword.v1 import auth_pb2, common_pb2

from support.postgres import PostgresServer
from support.server import WatchwordProcess
from support.tenants import API_KEY, create_credential, make_tenant


def _bearer(token: str) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=common_pb2.CredentialSource(
            http=common_pb2.HttpRequest(
                headers=[common_pb2.KeyValue(name="authorization", value=f"Bearer {token}")]
            )
        ),
        action="application.list",
    )


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    return subprocess.run(
        [sys.executable, "-m", "watchword.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def own_postgres(tmp_path: Path):
    with PostgresServer(tmp_path / "pg") as server:
        yield server


def test_serving_on_postgresql_needs_migrate_and_fails_closed_when_the_database_is_down(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = own_postgres.create_database("watchword")
    key_file = tmp_path / "master.key"
    key_file.write_text(master_key.generate())
    env = {
        "WATCHWORD_DATABASE_URL": url,
        "WATCHWORD_MODE": "production",
        "WATCHWORD_ALLOW_NON_HTTPS_ISSUER": "true",  # the default urn:watchword issuer
        "WATCHWORD_MASTER_KEY_FILE": str(key_file),
        "WATCHWORD_PORT": "0",
        # Serving known credentials from cache during an outage is tested in system/test_store_outage.py.
        "WATCHWORD_STORE_OUTAGE_GRACE_SECONDS": "0",
    }
    refused = _cli("serve", env=env)
    assert refused.returncode == 2
    assert "run `watchword migrate`" in refused.stderr
    migrated = _cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"revision {database.head_revision()}" in migrated.stdout

    with WatchwordProcess(tmp_path / "unused", env=env) as server:
        assert not (tmp_path / "unused").exists(), (
            "no data directory is needed on PostgreSQL with a master key"
        )
        tenant = make_tenant(server)
        key = create_credential(
            server,
            kind=API_KEY,
            organization_id=tenant.organization_id,
            name="pg",
            permissions=["application.list"],
        )
        request = _bearer(key.secret)
        request.resource.organization_id = tenant.organization_id
        assert server.auth().Authorize(request, timeout=10).decision.allowed

        uncached = create_credential(
            server, kind=API_KEY, organization_id=tenant.organization_id, name="cold"
        )
        cold = _bearer(uncached.secret)
        cold.resource.organization_id = tenant.organization_id

        own_postgres.stop()
        # A credential not in this replica's cache needs the store: UNAVAILABLE at once, never an allow.
        with pytest.raises(grpc.RpcError) as cold_error:
            server.auth().Authorize(cold, timeout=15)
        assert cold_error.value.code() == grpc.StatusCode.UNAVAILABLE
        # A verified one is answered from the cache for at most its 1 s freshness, then fails closed too.
        time.sleep(1.2)
        with pytest.raises(grpc.RpcError) as caught:
            server.auth().Authorize(request, timeout=15)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        status = rpc_status.from_call(caught.value)
        assert status is not None
        assert "store_unavailable" in str(status.details[0].value)
        assert "Traceback" not in (caught.value.details() or "")

        own_postgres.start()
        response = server.auth().Authorize(request, timeout=15)
        assert response.decision.allowed, "the service recovers by itself when the database returns"
        garbage = _bearer("wwak_0000000000000000_" + "0" * 38)
        garbage.resource.organization_id = tenant.organization_id
        assert server.auth().Authorize(garbage, timeout=10).refusal.reason == reasons.CREDENTIAL_MALFORMED


def test_s7_migrate_binds_previous_memberships_to_the_issuer_named_on_postgresql(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database(f"bind_{os.getpid()}_{time.monotonic_ns()}")
    database.migrate(url, "0005")  # the release before memberships named their issuer
    engine = sa.create_engine(database.sync_url(url))
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO organizations VALUES ('org-a', 'a', now())"))
        connection.execute(sa.text("""INSERT INTO memberships VALUES ('org-a', 'alice', '["admin"]')"""))
    config = tmp_path / "watchword.toml"
    config.write_text(
        "".join(
            f'[[issuers]]\nissuer = "{issuer}"\naudiences = ["api"]\njwks_uri = "{issuer}/certs"\n'
            'roles_source = "memberships"\n'
            for issuer in ("https://a.example", "https://b.example")
        )
    )
    env = {"WATCHWORD_DATABASE_URL": url, "WATCHWORD_DATA_DIR": str(tmp_path / "data")}

    def issuers() -> list[str]:
        with engine.connect() as connection:
            return list(connection.execute(sa.text("SELECT issuer FROM memberships")).scalars())

    try:
        migrated = _cli("--config", str(config), "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "--bind-memberships-to" in migrated.stderr  # the warning says how to bind them
        assert issuers() == [""]  # two issuers: which one alice was is not guessed; she holds nothing yet
        unknown = _cli(
            "--config", str(config), "migrate", "--bind-memberships-to", "https://c.example", env=env
        )
        assert unknown.returncode == 2
        assert "configured issuer" in unknown.stderr
        bound = _cli(
            "--config", str(config), "migrate", "--bind-memberships-to", "https://b.example", env=env
        )
        assert bound.returncode == 0, bound.stderr
        assert "1 memberships" in bound.stdout
        assert issuers() == ["https://b.example"]
    finally:
        engine.dispose()
