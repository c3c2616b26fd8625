"""The store goes away under the OAuth HTTP endpoints (I1, I5): `POST /oauth/token` and the JWKS answer a
clean 503 `temporarily_unavailable` in RFC 6749's JSON shape (never Starlette's plain-text 500, never a
traceback), the token request is audited as an error, the fault is logged under the incident id the
answer names, and the endpoint serves tokens again once PostgreSQL is back."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from test_store_outage import _serve_on, own_postgres  # noqa: F401 (a fixture)

from support.observe import file_records, wait_for_records
from support.postgres import PostgresServer
from support.server import WatchwordProcess
from support.tenants import API_KEY, create_credential, make_tenant

API_KEY_GRANT = "urn:watchword:params:oauth:grant-type:api-key"
RECOVERY_BOUND_SECONDS = 15.0


def _exchange(port: int, api_key: str, rid: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/oauth/token",
        data={"grant_type": API_KEY_GRANT, "api_key": api_key},
        headers={"x-request-id": rid},
        timeout=10,
    )


def _assert_clean_503(response: httpx.Response) -> str:
    """The OAuth error shape, not cached, no traceback; returns the incident id it names."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "temporarily_unavailable"
    assert "Traceback" not in response.text
    found = re.search(r"incident ([0-9a-f]{16})", body["error_description"])
    assert found, body
    return found.group(1)


def test_i1_i5_the_oauth_http_endpoints_answer_a_store_outage_with_an_audited_503(
    own_postgres: PostgresServer,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    audit_log = tmp_path / "audit.log"
    env = {**_serve_on(own_postgres, tmp_path), "WATCHWORD_AUDIT_LOG_FILE": str(audit_log)}
    with WatchwordProcess(tmp_path / "unused", env=env) as server:
        tenant = make_tenant(server)
        key = create_credential(
            server,
            kind=API_KEY,
            organization_id=tenant.organization_id,
            name="cold",
            permissions=["event_type.list"],
        )
        own_postgres.stop()
        # A key this replica never saw, and a key set it never loaded: both need the store.
        incident = _assert_clean_503(_exchange(server.http_port, key.secret, "outage-token-1"))
        jwks = httpx.get(f"http://127.0.0.1:{server.http_port}/.well-known/jwks.json", timeout=10)
        _assert_clean_503(jwks)
        metadata = f"http://127.0.0.1:{server.http_port}/.well-known/oauth-authorization-server"
        assert httpx.get(metadata, timeout=10).status_code == 200  # needs no store

        (record,) = wait_for_records(file_records(audit_log), lambda r: r["request_id"] == "outage-token-1")
        assert (record["rpc"], record["result"]) == ("POST /oauth/token", "error")
        assert record["reason"] == "temporarily_unavailable"
        assert record["who"] == {"credential_id": key.credential.id}
        assert record["what"] == {"action": "issue_token", "grant": "api_key_exchange"}
        logged = [line for line in server.output if incident in line]
        assert len(logged) == 1
        assert "store unavailable during POST /oauth/token" in logged[0]

        own_postgres.start()
        started = time.monotonic()
        while (answer := _exchange(server.http_port, key.secret, "after-outage")).status_code != 200:
            assert answer.status_code == 503, answer.text
            assert time.monotonic() - started < RECOVERY_BOUND_SECONDS, "no recovery after the restart"
            time.sleep(0.2)
        assert answer.json()["token_type"] == "Bearer"
    assert key.secret not in audit_log.read_text()
    assert not any(key.secret in line for line in server.output)
