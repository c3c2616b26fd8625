"""E1/E4 with a real Envoy (the shipped examples, ports filled in): routes named per Envoy route by
`context_extensions` (gRPC mode), decision ids that join Envoy's access log line and Watchword's audit record,
and dry-run routes that let a would-be refusal through with the would-be answer for the upstream and for
the access log, in both modes. One Envoy per mode: each start costs seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from watchword import reasons

from support.envoy import (
    ACCESS_LOG_ARGS,
    CLUSTERS,
    HTTP_MODE_SETTINGS,
    EchoUpstream,
    EnvoyProcess,
    example_config,
    write_config,
)
from support.server import WatchwordProcess
from support.tenants import APPLICATION_SECRET, Tenant, create_credential, make_tenant

# A route of the table in dry-run, beside the shared E1 routes.
DRY_RUN_ROUTE = """
[[routes]]
method = "GET"
path = "/v1/dry/applications/{application_id}"
action = "application.get"
dry_run = true
"""
PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
DECISION_ID = "x-watchword-decision-id"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WatchwordProcess, EchoUpstream]]:
    directory = tmp_path_factory.mktemp("e1-routes")
    config = write_config(directory, HTTP_MODE_SETTINGS + DRY_RUN_ROUTE)
    with (
        WatchwordProcess(directory / "data", args=["--config", str(config)]) as watchword,
        EchoUpstream() as upstream,
    ):
        yield watchword, upstream


@pytest.fixture(scope="module")
def tenant(served: tuple[WatchwordProcess, EchoUpstream]) -> tuple[Tenant, str]:
    watchword, _ = served
    tenant = make_tenant(watchword, "routes")
    secret = create_credential(
        watchword, kind=APPLICATION_SECRET, organization_id=tenant.organization_id,
        application_id=tenant.application_id, name="routes",
    ).secret  # fmt: skip
    return tenant, secret


def envoy_route(prefix: str, extensions: dict[str, str]) -> dict[str, Any]:
    """An Envoy route to the API whose ext_authz check carries these context_extensions."""
    return {
        "match": {"prefix": prefix},
        "route": {"cluster": "api"},
        "typed_per_filter_config": {
            "envoy.filters.http.ext_authz": {
                "@type": PER_ROUTE,
                "check_settings": {"context_extensions": extensions},
            }
        },
    }


def add_routes(config: dict[str, Any], *routes: dict[str, Any]) -> None:
    """Put `routes` before the example's catch-all route."""
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][:0] = routes


def get(envoy: EnvoyProcess, path: str, secret: str = "", **headers: str) -> httpx.Response:
    if secret:
        headers["authorization"] = f"Bearer {secret}"
    return httpx.get(envoy.url(path), headers=headers, timeout=10)


def upstream_saw(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    return response.json()["headers"]


def eventually(found: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
    return value


def access_lines(envoy: EnvoyProcess, decision_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Envoy's access log lines of these decisions, by decision id (written by Envoy's flush thread)."""

    def lines() -> dict[str, dict[str, Any]] | None:
        found = {line["decision_id"]: line for line in envoy.access_log()}
        return found if set(decision_ids) <= set(found) else None

    return eventually(lines, "access log line for each decision")


def audit_record(watchword: WatchwordProcess, decision_id: str) -> dict[str, Any]:
    """The audit record of this decision (written by the audit thread)."""
    needle = f'"decision_id":"{decision_id}"'
    line = eventually(lambda: next((x for x in watchword.output if needle in x), None), "audit record")
    return json.loads(line)


def test_e1_context_extensions_name_routes_and_decision_ids_join_access_log_and_audit(
    served, tenant, tmp_path: Path
) -> None:
    watchword, upstream = served
    tenant, secret = tenant
    app, other = tenant.application_id, tenant.other_application_id
    config = example_config([watchword.port], upstream.port, "grpc")
    get_app = {"watchword.action": "application.get", "watchword.path": "/reports/{application_id}"}
    add_routes(
        config,
        envoy_route("/reports/", get_app),
        envoy_route("/typo/", {**get_app, "watchword.action": "application.gte"}),
        envoy_route(
            "/dry/", {**get_app, "watchword.path": "/dry/{application_id}", "watchword.dry_run": "true"}
        ),
    )
    with EnvoyProcess(config, tmp_path / "envoy", extra_args=ACCESS_LOG_ARGS) as envoy:
        envoy.wait_healthy(CLUSTERS["grpc"], 1)
        # A path only the Envoy route names: its action and resource come from the extensions.
        allowed = upstream_saw(get(envoy, f"/reports/{app}", secret, **{"x-watchword-dry-run": "true"}))
        assert allowed["x-watchword-principal-id"]
        assert "x-watchword-dry-run" not in allowed  # a spoofed dry-run marker is removed
        denied = get(envoy, f"/reports/{other}", secret)
        assert (denied.status_code, denied.json()["reason"]) == (403, reasons.RESOURCE_NOT_IN_SCOPE)
        typo = get(envoy, f"/typo/{app}", secret)
        assert (typo.status_code, typo.json()["reason"]) == (403, reasons.ACTION_UNKNOWN)
        # The route table still decides for the Envoy routes without extensions.
        assert upstream_saw(get(envoy, f"/v1/applications/{app}", secret))["x-watchword-principal-id"]
        # Dry-run named by the Envoy route: a would-be denial passes, with the would-be answer.
        dry = upstream_saw(get(envoy, f"/dry/{other}", secret))
        assert dry["x-watchword-dry-run"] == ["true"]
        assert dry["x-watchword-would-be-status"] == ["403"]
        assert dry["x-watchword-would-be-reason"] == [reasons.RESOURCE_NOT_IN_SCOPE]
        assert "x-watchword-principal-id" not in dry  # nobody was allowed
        ids = {
            "allowed": allowed[DECISION_ID][0],
            "denied": denied.headers[DECISION_ID],
            "dry": dry[DECISION_ID][0],
        }
        logged = access_lines(envoy, list(ids.values()))
    assert len(set(ids.values())) == 3
    assert (logged[ids["allowed"]]["path"], str(logged[ids["allowed"]]["status"])) == (
        f"/reports/{app}",
        "200",
    )
    assert str(logged[ids["denied"]]["status"]) == "403"
    dry_line = logged[ids["dry"]]
    assert (str(dry_line["status"]), dry_line["dry_run"], dry_line["would_be_status"]) == (
        "200",
        "true",
        "403",
    )
    assert dry_line["would_be_reason"] == reasons.RESOURCE_NOT_IN_SCOPE
    # The same ids name Watchword's audit records: the two logs join.
    assert audit_record(watchword, ids["allowed"])["result"] == "allow"
    record = audit_record(watchword, ids["denied"])
    assert (record["result"], record["reason"]) == ("deny", reasons.RESOURCE_NOT_IN_SCOPE)
    assert record["what"]["resource"]["application_id"] == other
    record = audit_record(watchword, ids["dry"])
    assert (record["result"], record["dry_run"]) == ("deny", True)


def test_e4_dry_run_route_passes_would_be_refusals_with_the_answer_upstream_and_in_the_access_log(
    served, tenant, tmp_path: Path
) -> None:
    watchword, upstream = served
    tenant, secret = tenant
    app, other = tenant.application_id, tenant.other_application_id
    config = example_config([watchword.ext_authz_http_port], upstream.port, "http")
    with EnvoyProcess(config, tmp_path / "envoy", extra_args=ACCESS_LOG_ARGS) as envoy:
        envoy.wait_healthy(CLUSTERS["http"], 1)
        denied_here = upstream_saw(get(envoy, f"/v1/dry/applications/{other}", secret))
        unauthenticated = upstream_saw(get(envoy, f"/v1/dry/applications/{app}"))
        allowed = upstream_saw(get(envoy, f"/v1/dry/applications/{app}", secret))
        enforced = get(envoy, f"/v1/applications/{other}", secret)  # not a dry-run route
        ids = [denied_here[DECISION_ID][0], enforced.headers[DECISION_ID]]
        logged = access_lines(envoy, ids)
    assert (denied_here["x-watchword-would-be-status"], denied_here["x-watchword-would-be-reason"]) == (
        ["403"],
        [reasons.RESOURCE_NOT_IN_SCOPE],
    )
    assert "x-watchword-principal-id" not in denied_here
    assert unauthenticated["x-watchword-would-be-status"] == ["401"]
    assert unauthenticated["x-watchword-would-be-reason"] == [reasons.CREDENTIAL_MISSING]
    assert allowed["x-watchword-would-be-status"] == ["200"]
    assert allowed["x-watchword-principal-id"]  # a would-be allow is an allow
    assert enforced.status_code == 403
    # Envoy's dynamic_metadata_from_headers carries the id and the would-be answer to the access log.
    assert (logged[ids[0]]["dry_run"], logged[ids[0]]["would_be_status"]) == ("true", "403")
    assert str(logged[ids[1]]["status"]) == "403"
    record = audit_record(watchword, ids[0])
    assert (record["rpc"], record["result"], record["dry_run"]) == ("ext_authz http", "deny", True)
    metrics = httpx.get(f"http://127.0.0.1:{watchword.metrics_port}/metrics", timeout=5).text
    assert (
        'watchword_dry_run_denials_total{reason="resource_not_in_scope",rpc="ext_authz http"} 1.0' in metrics
    )
