"""E1/E4 with a real Envoy (the shipped examples, ports filled in): routes named per Envoy route by
`context_extensions` (gRPC mode), decision ids that join Envoy's access log line and Watchword's audit record,
and dry-run routes that let a would-be refusal through with the would-be answer for the upstream and for
the access log, in both modes. One Envoy per mode: each start costs seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from watchword import reasons

from support.envoy import (
    ACCESS_LOG_ARGS,
    CLUSTERS,
    DECISION_ID,
    HTTP_MODE_SETTINGS,
    EchoUpstream,
    EnvoyProcess,
    access_lines,
    add_routes,
    audit_record,
    envoy_route,
    example_config,
    get,
    upstream_saw,
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
