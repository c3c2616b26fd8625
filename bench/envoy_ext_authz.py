"""HTTP requests per second through a real Envoy (E1), driven by wrk, with every baseline from the same run.

    .venv/bin/python bench/envoy_ext_authz.py [--duration 10] [--connections 16] [--rounds 1]

Starts Watchword (a route table with one route), the always-allow ext_authz server of
bench/always_allow_ext_authz.py, and one Envoy (`--concurrency 1`, leaving the other core to Python) with
one listener per case; each listener's route is answered by Envoy itself (`direct_response`), so only the
filter in front differs:

- (a) no filter: Envoy answering directly, the ceiling;
- (b) ext_authz asking Watchword, a C3 static token (warm cache);
- (c) ext_authz asking the always-allow server, written the same way (grpc.aio, same interceptor): (b)/(c)
  is Watchword's own cost, issue #8 aims at >= 0.9;
- (d) Envoy's native `jwt_authn` verifying an ES256 JWT against an inline JWKS (no JWT cache);
- (e) ext_authz asking Watchword about an ES256 JWT of its own (C8, verified once then remembered).

Each case runs `wrk -t1` for the same duration and connections, in a rotated order per round; the median
round is printed. A case answering anything but 2xx stops the run: it would measure the wrong thing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from watchword.v1 import admin_pb2, common_pb2

from support.envoy import EnvoyProcess
from support.server import WatchwordProcess
from support.tokens import watchword_token

ROOT = Path(__file__).resolve().parent.parent
ROUTE = """
[[routes]]
method = "GET"
path = "/bench/{application_id}"
action = "application.get"
"""
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
CASES = {
    "direct": "(a) Envoy direct_response, no filter",
    "watchword": "(b) ext_authz -> Watchword, C3 token",
    "allow": "(c) ext_authz -> always-allow server",
    "jwt_authn": "(d) Envoy jwt_authn, ES256 JWT",
    "watchword_jwt": "(e) ext_authz -> Watchword, C8 ES256",
}
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")


def _ext_authz(cluster: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "status_on_error": {"code": "ServiceUnavailable"},
            "include_peer_certificate": False,
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": "2s"},
        },
    }


def _jwt_authn(jwks: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                "bench": {
                    "issuer": "bench-issuer",
                    "audiences": ["bench"],
                    "local_jwks": {"inline_string": json.dumps(jwks)},
                    "forward": False,
                }
            },
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def _listener(name: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    manager = {
        "@type": HCM,
        "stat_prefix": name,
        "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route]}]},
        "http_filters": [*filters, ROUTER],
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _grpc_cluster(name: str, port: int) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }


def envoy_config(watchword_port: int, allow_port: int, jwks: dict[str, Any]) -> dict[str, Any]:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                _listener("direct", []),
                _listener("watchword", [_ext_authz("watchword")]),
                _listener("allow", [_ext_authz("allow")]),
                _listener("jwt_authn", [_jwt_authn(jwks)]),
            ],
            "clusters": [_grpc_cluster("watchword", watchword_port), _grpc_cluster("allow", allow_port)],
        },
    }


def _credentials(server: WatchwordProcess) -> tuple[str, str, str]:
    """The application id, a C3 static token allowed `application.get` on it, and a C8 token too."""
    admin, md = server.admin(), server.admin_metadata
    org = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="bench"), metadata=md)
    app = admin.CreateApplication(
        admin_pb2.CreateApplicationRequest(organization_id=org.id, name="a"), metadata=md
    )
    static = admin.CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_STATIC_TOKEN,
            organization_id=org.id,
            name="bench",
            permissions=["application.get"],
        ),
        metadata=md,
    )
    own_jwt = watchword_token(server.data_dir, org.id, scope="application.get", exp=int(time.time()) + 3600)
    return app.id, static.secret, own_jwt


def _external_jwt() -> tuple[dict[str, Any], str]:
    """An ES256 key as an inline JWKS for jwt_authn, and a token it signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "bench", "alg": "ES256", "use": "sig"}
    now = int(time.time())
    claims = {"iss": "bench-issuer", "aud": "bench", "sub": "user", "iat": now, "exp": now + 3600}
    return {"keys": [jwk]}, jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench"})


def wrk(url: str, token: str, duration: int, connections: int) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    if token:
        command += ["-H", f"authorization: Bearer {token}"]
    result = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=duration + 60, check=True
    )
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise SystemExit(f"wrk saw errors for {url}:\n{result.stdout}")
    match = _RATE.search(result.stdout)
    if match is None:
        raise SystemExit(f"wrk printed no rate for {url}:\n{result.stdout}")
    return float(match.group(1))


def _start_always_allow() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "always_allow_ext_authz.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if match is None:
        process.kill()
        raise SystemExit(f"the always-allow server did not start: {line!r}")
    return process, int(match.group(1))


def run(duration: int, connections: int, rounds: int) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: `apt-get install wrk` (bash .ci/run installs it)")
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        (directory / "watchword.toml").write_text(ROUTE, encoding="utf-8")
        allow, allow_port = _start_always_allow()
        try:
            with WatchwordProcess(
                directory / "data",
                # The audit log (on, as by default) in a file, as an operator keeps it: on stdout this
                # process would read every line through the pipe, on the cores the benchmark measures.
                env={
                    "WATCHWORD_LOG_LEVEL": "WARNING",
                    "WATCHWORD_HTTP_ENABLED": "false",
                    "WATCHWORD_AUDIT_LOG_FILE": str(directory / "audit.jsonl"),
                },
                args=["--config", str(directory / "watchword.toml")],
            ) as watchword:
                application, static_token, own_jwt = _credentials(watchword)
                jwks, external_jwt = _external_jwt()
                config = envoy_config(watchword.port, allow_port, jwks)
                with EnvoyProcess(config, directory / "envoy") as envoy:
                    path = f"/bench/{application}"
                    targets = {
                        "direct": (envoy.url(path, "direct"), ""),
                        "watchword": (envoy.url(path, "watchword"), static_token),
                        "allow": (envoy.url(path, "allow"), static_token),
                        "jwt_authn": (envoy.url(path, "jwt_authn"), external_jwt),
                        "watchword_jwt": (envoy.url(path, "watchword"), own_jwt),
                    }
                    for name, (url, token) in targets.items():  # each case is what it claims, and warm
                        headers = {"authorization": f"Bearer {token}"} if token else {}
                        answer = httpx.get(url, headers=headers, timeout=10)
                        if answer.status_code != 200:
                            raise SystemExit(f"{name}: {answer.status_code} {answer.text}")
                    samples: dict[str, list[float]] = {name: [] for name in targets}
                    names = list(targets)
                    for round_number in range(rounds):
                        shift = round_number % len(names)
                        for name in names[shift:] + names[:shift]:
                            url, token = targets[name]
                            samples[name].append(wrk(url, token, duration, connections))
        finally:
            allow.terminate()
            allow.wait(10)
    rates = {name: statistics.median(values) for name, values in samples.items()}
    print(
        f"Envoy in front: wrk -t1 -c{connections} -d{duration}s per case, Envoy --concurrency 1, "
        f"median of {rounds} round(s)"
    )
    print(f"{'case':<40} {'requests/s':>10} {'ratio to (a)':>13}")
    for name, label in CASES.items():
        print(f"{label:<40} {rates[name]:>10.0f} {rates[name] / rates['direct']:>13.2f}")
    comparisons = {
        "(b)/(c) Watchword vs always-allow": rates["watchword"] / rates["allow"],
        "(e)/(d) Watchword C8 vs jwt_authn": rates["watchword_jwt"] / rates["jwt_authn"],
    }
    for label, ratio in comparisons.items():
        print(f"{label:<40} {'':>10} {ratio:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per case and round")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the median is printed")
    args = parser.parse_args()
    run(args.duration, args.connections, args.rounds)


if __name__ == "__main__":
    main()
