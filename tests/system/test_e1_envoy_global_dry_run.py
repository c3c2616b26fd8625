"""E1/E4 global dry-run (`ext_authz_dry_run = true`) with a real Envoy in each mode (issue #15, section 3):
a request Watchword would deny reaches the upstream, with the would-be answer in its headers and in
Envoy's dynamic metadata (the access log line); the audit record says `dry_run` and the would-be result;
`watchword_dry_run_denials_total` counts it. With the setting, an unrouted request passes too (the way to
find the routes still missing), while a broken Envoy route (`action_unknown`) is still refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

# Envoy's name for each mode's decisions in Watchword's metrics (the `rpc` label).
RPC = {"grpc": "Check", "http": "ext_authz http"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WatchwordProcess, EchoUpstream]]:
    directory = tmp_path_factory.mktemp("global-dry-run")
    config = write_config(directory, "ext_authz_dry_run = true\n" + HTTP_MODE_SETTINGS)
    with (
        WatchwordProcess(directory / "data", args=["--config", str(config)]) as watchword,
        EchoUpstream() as upstream,
    ):
        yield watchword, upstream


@pytest.fixture(scope="module")
def tenant(served: tuple[WatchwordProcess, EchoUpstream]) -> tuple[Tenant, str]:
    watchword, _ = served
    tenant = make_tenant(watchword, "dry")
    secret = create_credential(
        watchword, kind=APPLICATION_SECRET, organization_id=tenant.organization_id,
        application_id=tenant.application_id, name="dry",
    ).secret  # fmt: skip
    return tenant, secret


def dry_run_denials(watchword: WatchwordProcess, rpc: str, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{watchword.metrics_port}/metrics", timeout=5).text
    pattern = rf'^watchword_dry_run_denials_total{{reason="{reason}",rpc="{rpc}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def would_be(headers: dict[str, list[str]]) -> tuple[str, str, str]:
    return (
        headers["x-watchword-dry-run"][0],
        headers["x-watchword-would-be-status"][0],
        headers["x-watchword-would-be-reason"][0],
    )


def envoy_for(mode: str, watchword: WatchwordProcess, upstream: EchoUpstream, work: Path) -> EnvoyProcess:
    port = watchword.port if mode == "grpc" else watchword.ext_authz_http_port
    config = example_config([port], upstream.port, mode)
    if mode == "grpc":  # an Envoy route whose extensions name an action the catalogue lacks
        typo = {"watchword.action": "application.gte", "watchword.path": "/typo/{application_id}"}
        add_routes(config, envoy_route("/typo/", typo))
    return EnvoyProcess(config, work, extra_args=ACCESS_LOG_ARGS)


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_e1_e4_global_dry_run_lets_would_be_refusals_through_with_the_answer_audit_and_metric(
    served, tenant, tmp_path: Path, mode: str
) -> None:
    watchword, upstream = served
    tenant, secret = tenant
    app, other = tenant.application_id, tenant.other_application_id
    denials_before = dry_run_denials(watchword, RPC[mode], reasons.RESOURCE_NOT_IN_SCOPE)
    with envoy_for(mode, watchword, upstream, tmp_path / "envoy") as envoy:
        envoy.wait_healthy(CLUSTERS[mode], 1)
        denied_here = upstream_saw(get(envoy, f"/v1/applications/{other}", secret))
        unauthenticated = upstream_saw(get(envoy, f"/v1/applications/{app}"))
        unrouted = upstream_saw(get(envoy, "/v1/nowhere", secret))
        allowed = upstream_saw(get(envoy, f"/v1/applications/{app}", secret))
        ids = [found[DECISION_ID][0] for found in (denied_here, unauthenticated, unrouted, allowed)]
        if mode == "grpc":  # a broken Envoy route is never dry-run: it is still refused
            typo = get(envoy, f"/typo/{app}", secret)
            assert (typo.status_code, typo.json()["reason"]) == (403, reasons.ACTION_UNKNOWN)
            ids.append(typo.headers[DECISION_ID])
        logged = access_lines(envoy, ids)

    # The upstream sees each would-be answer; nobody is named on a would-be refusal.
    assert would_be(denied_here) == ("true", "403", reasons.RESOURCE_NOT_IN_SCOPE)
    assert "x-watchword-principal-id" not in denied_here
    assert would_be(unauthenticated) == ("true", "401", reasons.CREDENTIAL_MISSING)
    assert would_be(unrouted) == ("true", "403", reasons.ROUTE_NOT_CONFIGURED)
    assert would_be(allowed) == ("true", "200", "allowed")
    assert allowed["x-watchword-principal-id"]  # a would-be allow is an allow
    # Envoy's dynamic metadata (gRPC: the CheckResponse's; HTTP: from the answer's headers) in its log.
    line = logged[ids[0]]
    assert (str(line["status"]), line["dry_run"], line["would_be_status"]) == ("200", "true", "403")
    assert line["would_be_reason"] == reasons.RESOURCE_NOT_IN_SCOPE
    assert (logged[ids[2]]["would_be_reason"], str(logged[ids[2]]["status"])) == (
        reasons.ROUTE_NOT_CONFIGURED,
        "200",
    )
    if mode == "grpc":
        assert str(logged[ids[4]]["status"]) == "403"
        assert logged[ids[4]]["dry_run"] in (None, "-", "")
        assert "dry_run" not in audit_record(watchword, ids[4])
    # The audit records keep the would-be result, marked dry_run, under the same decision ids.
    expected = [
        ("deny", reasons.RESOURCE_NOT_IN_SCOPE),
        ("refused", reasons.CREDENTIAL_MISSING),
        ("deny", reasons.ROUTE_NOT_CONFIGURED),
        ("allow", "allowed"),
    ]
    for decision_id, (result, reason) in zip(ids, expected, strict=False):
        record: dict[str, Any] = audit_record(watchword, decision_id)
        assert (record["rpc"], record["result"], record["reason"]) == (RPC[mode], result, reason)
        assert record["dry_run"] is True
    counted = dry_run_denials(watchword, RPC[mode], reasons.RESOURCE_NOT_IN_SCOPE)
    assert counted == denials_before + 1
    assert dry_run_denials(watchword, RPC[mode], reasons.ROUTE_NOT_CONFIGURED) >= 1
