"""C10 with a real Envoy terminating mutual TLS in front of an upstream: the client certificate reaches
Watchword in the CheckRequest (`include_peer_certificate: true`) and is mapped to its service identity;
a client-sent `x-forwarded-client-cert` is ignored while `xfcc_trusted` is off (Envoy told to forward it
as is), and with `forward_client_cert_details: SANITIZE_SET` and `xfcc_trusted` on only Envoy's value
counts. One Envoy, two listeners, each asking its own Watchword (the setting off, and on)."""

from __future__ import annotations

import copy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from watchword import reasons
from watchword.v1 import admin_pb2, common_pb2

from support.certificates import Issued, TlsFiles, certificate_authority, client_certificate, self_signed
from support.envoy import EchoUpstream, EnvoyProcess, example_config, write_config
from support.server import WatchwordProcess

SPIFFE_ID = "spiffe://example.org/ns/billing/sa/worker"
STRANGER_ID = "spiffe://example.org/ns/billing/sa/stranger"
EDGE = "spiffe://example.org/edge"
LISTENERS = {"off": "FORWARD_ONLY", "on": "SANITIZE_SET"}  # Watchword's xfcc_trusted -> Envoy's mode


@dataclass(frozen=True)
class World:
    envoy: EnvoyProcess
    ca: Issued
    server_ca: Path
    directory: Path
    registered: dict[str, tuple[str, str]]  # per listener: its Watchword's application and C10 credential


def _tls_context(server: TlsFiles, client_ca: Path) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(server.certificate)},
                        "private_key": {"filename": str(server.private_key)},
                    }
                ],
                "validation_context": {"trusted_ca": {"filename": str(client_ca)}},
            },
        },
    }


def _listener(
    base: dict[str, Any], name: str, cluster: str, mode: str, tls: dict[str, Any]
) -> dict[str, Any]:
    listener = copy.deepcopy(base)
    listener["name"] = name
    chain = listener["filter_chains"][0]
    chain["transport_socket"] = tls
    manager = chain["filters"][0]["typed_config"]
    manager["forward_client_cert_details"] = mode
    manager["set_current_client_cert_details"] = {"cert": True, "uri": True, "subject": True}
    for http_filter in manager["http_filters"]:
        if http_filter["name"] == "envoy.filters.http.ext_authz":
            http_filter["typed_config"]["include_peer_certificate"] = True
            http_filter["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = cluster
    return listener


def _envoy_config(ports: dict[str, int], upstream: int, tls: dict[str, Any]) -> dict[str, Any]:
    config = example_config([ports["off"]], upstream)
    resources = config["static_resources"]
    base = resources["listeners"][0]
    resources["listeners"] = [
        _listener(base, name, f"watchword_{name}", LISTENERS[name], tls) for name in ports
    ]
    template = next(c for c in resources["clusters"] if c["name"] == "watchword")
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] != "watchword"]
    for name, port in ports.items():
        cluster = copy.deepcopy(template)
        cluster["name"] = cluster["load_assignment"]["cluster_name"] = f"watchword_{name}"
        address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
        cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": address}}]}]
        resources["clusters"].append(cluster)
    return config


def _register(watchword: WatchwordProcess) -> tuple[str, str]:
    admin, metadata = watchword.admin(), watchword.admin_metadata
    organization = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="w"), metadata=metadata)
    application = admin.CreateApplication(
        admin_pb2.CreateApplicationRequest(organization_id=organization.id, name="a"), metadata=metadata
    )
    created = admin.CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_CLIENT_CERTIFICATE,
            organization_id=organization.id,
            name="billing worker",
            permissions=["application.get"],
            service_identity=SPIFFE_ID,
        ),
        metadata=metadata,
    )
    return application.id, created.credential.id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("c10-envoy")
    ca = certificate_authority()
    client_ca = directory / "clients-ca.pem"
    client_ca.write_bytes(ca.pem)
    server = self_signed(directory / "envoy", ips=("127.0.0.1",), dns=("localhost",))
    common = f'tls_client_ca_file = "{client_ca}"\n'
    for name in LISTENERS:
        (directory / name).mkdir()
    configs = {
        "off": write_config(directory / "off", common),
        "on": write_config(directory / "on", common + "xfcc_trusted = true\n"),
    }
    with (
        WatchwordProcess(directory / "off" / "data", args=["--config", str(configs["off"])]) as off,
        WatchwordProcess(directory / "on" / "data", args=["--config", str(configs["on"])]) as on,
        EchoUpstream() as upstream,
    ):
        registered = {name: _register(ww) for name, ww in (("off", off), ("on", on))}
        ports = {"off": off.port, "on": on.port}
        config = _envoy_config(ports, upstream.port, _tls_context(server, client_ca))
        with EnvoyProcess(config, directory / "envoy-run") as envoy:
            envoy.wait_healthy("watchword_off", 1)
            envoy.wait_healthy("watchword_on", 1)
            yield World(envoy, ca, server.certificate, directory, registered)


def _get(
    world: World, listener: str, client: Issued, headers: dict[str, str] | None = None
) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(world.server_ca))
    cert_file, key_file = client.write(world.directory / "clients", f"client-{id(client)}")
    context.load_cert_chain(cert_file, key_file)
    application = world.registered[listener][0]
    port = world.envoy.listeners[listener]
    url = f"https://127.0.0.1:{port}/v1/applications/{application}"
    return httpx.get(url, verify=context, headers=headers or {}, timeout=10)


def _forged_xfcc(impersonated: Issued) -> dict[str, str]:
    pem = quote(impersonated.pem.decode(), safe="")
    return {"x-forwarded-client-cert": f'By={EDGE};Hash=00;Cert="{pem}";URI={SPIFFE_ID}'}


@pytest.mark.parametrize("listener", ["off", "on"])
def test_c10_envoy_passes_the_client_certificate_and_watchword_maps_it(world: World, listener: str) -> None:
    answer = _get(world, listener, client_certificate(world.ca, spiffe_id=SPIFFE_ID))
    assert answer.status_code == 200, answer.text
    seen = answer.json()["headers"]
    assert seen["x-watchword-credential-kind"] == ["client_certificate"]
    assert seen["x-watchword-credential-id"] == [world.registered[listener][1]]
    unknown = _get(world, listener, client_certificate(world.ca, spiffe_id=STRANGER_ID))
    assert unknown.status_code == 401
    assert unknown.json()["reason"] == reasons.SERVICE_IDENTITY_UNKNOWN


@pytest.mark.parametrize("listener", ["off", "on"])
def test_c10_envoy_a_client_sent_xfcc_never_impersonates(world: World, listener: str) -> None:
    registered_cert = client_certificate(world.ca, spiffe_id=SPIFFE_ID)  # its public half leaked
    stranger = client_certificate(world.ca, spiffe_id=STRANGER_ID)
    answer = _get(world, listener, stranger, _forged_xfcc(registered_cert))
    assert answer.status_code == 401, answer.text
    assert answer.json()["reason"] == reasons.SERVICE_IDENTITY_UNKNOWN


def test_c10_envoy_forwarding_a_client_xfcc_to_an_untrusting_watchword_changes_nothing(world: World) -> None:
    good = client_certificate(world.ca, spiffe_id=SPIFFE_ID)
    forged = _forged_xfcc(client_certificate(world.ca, spiffe_id=STRANGER_ID))
    answer = _get(world, "off", good, forged)
    assert answer.status_code == 200, answer.text
    (xfcc,) = answer.json()["headers"]["x-forwarded-client-cert"]
    assert "Hash=00" in xfcc  # FORWARD_ONLY: the client's value went through, and Watchword ignored it


def test_c10_envoy_with_sanitize_set_only_envoys_xfcc_counts(world: World) -> None:
    good = client_certificate(world.ca, spiffe_id=SPIFFE_ID)
    forged = _forged_xfcc(client_certificate(world.ca, spiffe_id=STRANGER_ID))
    answer = _get(world, "on", good, forged)
    assert answer.status_code == 200, answer.text
    (xfcc,) = answer.json()["headers"]["x-forwarded-client-cert"]
    assert "Hash=00" not in xfcc  # Envoy replaced the client's value with its own
    assert f"URI={SPIFFE_ID}" in xfcc
