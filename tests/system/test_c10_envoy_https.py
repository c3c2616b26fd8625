"""E4 over mutual TLS with a real Envoy: Watchword's HTTP ext_authz port served over TLS
(`ext_authz_http_tls`) and asking for Envoy's client certificate (`ext_authz_http_tls_client_ca_file`);
Envoy's `watchword_http` cluster is the shipped clients/envoy/envoy-http-tls.yaml, with only file names,
addresses and ports changed. Checks are decided over that hop; an Envoy with a certificate of another CA
gets no decision, and its requests are refused (503, never let through)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from watchword import reasons

from support.certificates import Issued, certificate_authority, client_certificate, self_signed
from support.envoy import HTTP_MODE_SETTINGS, ROOT, EchoUpstream, EnvoyProcess, example_config, write_config
from support.server import WatchwordProcess

TLS_CLUSTER = ROOT / "clients" / "envoy" / "envoy-http-tls.yaml"
HOST = "watchword.internal"  # the name the shipped cluster checks (SNI and SAN)


@dataclass(frozen=True)
class World:
    envoy: EnvoyProcess
    upstream_port: int


def _tls_cluster(name: str, port: int, envoy_cert: tuple[Path, Path], watchword_ca: Path) -> dict[str, Any]:
    """The shipped cluster, on 127.0.0.1:`port`, with these files."""
    cluster = yaml.safe_load(TLS_CLUSTER.read_text(encoding="utf-8"))
    cluster["name"] = cluster["load_assignment"]["cluster_name"] = name
    cluster["type"] = "STATIC"
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": address}}]}]
    context = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    certificate, key = envoy_cert
    context["tls_certificates"] = [
        {"certificate_chain": {"filename": str(certificate)}, "private_key": {"filename": str(key)}}
    ]
    context["validation_context"]["trusted_ca"] = {"filename": str(watchword_ca)}
    return cluster


def _listener(base: dict[str, Any], name: str, cluster: str, port: int) -> dict[str, Any]:
    listener = copy.deepcopy(base)
    listener["name"] = name
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for http_filter in manager["http_filters"]:
        if http_filter["name"] == "envoy.filters.http.ext_authz":
            service = http_filter["typed_config"]["http_service"]
            service["server_uri"] = {"uri": f"https://{HOST}:{port}", "cluster": cluster, "timeout": "2s"}
    return listener


def _envoy_config(port: int, upstream: int, certs: dict[str, tuple[Path, Path]], watchword_ca: Path) -> dict:
    config = example_config([port], upstream, mode="http")
    resources = config["static_resources"]
    base = resources["listeners"][0]
    resources["listeners"] = [_listener(base, name, f"watchword_{name}", port) for name in certs]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] != "watchword_http"]
    for name, envoy_cert in certs.items():
        resources["clusters"].append(_tls_cluster(f"watchword_{name}", port, envoy_cert, watchword_ca))
    return config


def _write(issued: Issued, directory: Path, stem: str) -> tuple[Path, Path]:
    return issued.write(directory, stem)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("c10-envoy-https")
    server = self_signed(directory / "watchword", dns=(HOST,), ips=("127.0.0.1",))
    proxies = certificate_authority("proxies CA")
    (directory / "proxies-ca.pem").write_bytes(proxies.pem)
    certs = {
        "trusted": _write(
            client_certificate(proxies, spiffe_id="spiffe://example.org/edge"), directory, "edge"
        ),
        "stranger": _write(
            client_certificate(certificate_authority("another CA"), spiffe_id="spiffe://example.org/edge"),
            directory,
            "stranger",
        ),
    }
    settings = (
        HTTP_MODE_SETTINGS
        + f'tls_cert_file = "{server.certificate}"\ntls_key_file = "{server.private_key}"\n'
        + f'ext_authz_http_tls = true\next_authz_http_tls_client_ca_file = "{directory / "proxies-ca.pem"}"\n'
    )
    config = write_config(directory, settings)
    with (
        WatchwordProcess(directory / "data", args=["--config", str(config)]) as watchword,
        EchoUpstream() as upstream,
    ):
        envoy_config = _envoy_config(watchword.ext_authz_http_port, upstream.port, certs, server.certificate)
        with EnvoyProcess(envoy_config, directory / "envoy-run") as envoy:
            yield World(envoy, upstream.port)


def test_c10_envoy_asks_e4_over_mutual_tls_and_gets_decisions(world: World) -> None:
    answer = httpx.get(world.envoy.url("/v1/organizations/acme", "trusted"), timeout=10)
    # Watchword decided (no credential: 401 with its reason and challenge), over the TLS hop.
    assert answer.status_code == 401, answer.text
    assert answer.json()["reason"] == reasons.CREDENTIAL_MISSING
    assert "www-authenticate" in answer.headers
    bogus = {"authorization": "Bearer wwak_not-a-key"}
    refused = httpx.get(world.envoy.url("/v1/organizations/acme", "trusted"), headers=bogus, timeout=10)
    assert refused.status_code == 401
    assert refused.json()["reason"] != reasons.CREDENTIAL_MISSING


def test_c10_an_envoy_with_a_certificate_of_another_ca_gets_no_decision(world: World) -> None:
    answer = httpx.get(world.envoy.url("/v1/organizations/acme", "stranger"), timeout=10)
    assert answer.status_code == 503, answer.text  # failure_mode_allow: false: refused, never passed on
    assert "reason" not in answer.text  # no answer came from Watchword
