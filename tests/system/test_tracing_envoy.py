"""Tracing behind a real Envoy (issue #15, section 1): a client sends a `traceparent` through Envoy, whose
ext_authz filter asks Watchword (the shipped examples, gRPC mode E1 and HTTP mode E4); Watchword's Check
span arrives at a real OTLP receiver in the client's trace, under the client's span."""

from __future__ import annotations

from collections.abc import Iterator
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
from support.otlp_receiver import OtlpReceiver
from support.server import WatchwordProcess
from support.tenants import STATIC_TOKEN, create_credential, make_tenant

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
CHECK_SPANS = {"grpc": "envoy.service.auth.v3.Authorization/Check", "http": "ext_authz http"}


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WatchwordProcess, OtlpReceiver, Path]]:
    directory = tmp_path_factory.mktemp("traced-envoy")
    config = write_config(directory, HTTP_MODE_SETTINGS)
    with (
        OtlpReceiver("grpc") as receiver,
        WatchwordProcess(directory / "data", env=receiver.env(), args=["--config", str(config)]) as watchword,
    ):
        yield watchword, receiver, directory


@pytest.mark.parametrize("mode", ["grpc", "http"], ids=["e1-grpc", "e4-http"])
def test_e1_check_span_joins_the_trace_the_client_sent_through_envoy(traced, mode: str) -> None:
    watchword, receiver, directory = traced
    tenant = make_tenant(watchword, f"traced-{mode}")
    org = tenant.organization_id
    token = create_credential(
        watchword, kind=STATIC_TOKEN, organization_id=org, name="t", permissions=["organization.get"]
    ).secret
    door = watchword.port if mode == "grpc" else watchword.ext_authz_http_port
    with EchoUpstream() as upstream:
        config = example_config([door], upstream.port, mode)
        with EnvoyProcess(config, directory / f"envoy-{mode}") as envoy:
            envoy.wait_healthy(CLUSTERS[mode], 1)
            span_id = f"{PARENT_ID[:-1]}{'1' if mode == 'grpc' else '2'}"
            headers = {"authorization": f"Bearer {token}", "traceparent": f"00-{TRACE_ID}-{span_id}-01"}
            answer = httpx.get(envoy.url(f"/v1/organizations/{org}"), headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text

    def arrived(spans: list) -> bool:
        return any(s.name == CHECK_SPANS[mode] and s.parent_span_id == span_id for s in spans)

    check = next(
        s for s in receiver.wait_for(arrived) if s.name == CHECK_SPANS[mode] and s.parent_span_id == span_id
    )
    assert check.trace_id == TRACE_ID
    assert check.kind == 2  # SERVER
    assert check.attributes["watchword.route"] == "GET /v1/organizations/{organization_id}"
    assert check.attributes["watchword.action"] == "organization.get"
    assert check.attributes["watchword.decision"] == "allow"
    assert check.attributes["watchword.credential.kind"] == "static_token"
    children = {s.name for s in receiver.spans() if s.parent_span_id == check.span_id}
    assert {"extract", "identify", "decide"} <= children
