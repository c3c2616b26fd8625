"""HTTP requests per second through a real Envoy (E1, E4), driven by wrk, with every baseline from the same
run; then latency at a fixed offered rate (open loop) for the main cases.

    .venv/bin/python bench/envoy_ext_authz.py [--duration 10] [--connections 16] [--rounds 1]
        [--latency-rate 1000] [--latency-seconds 5]

Starts Watchword (a route table with one route; its gRPC port and its HTTP ext_authz listener), the
always-allow ext_authz servers of bench/always_allow_ext_authz.py (gRPC and HTTP), and one Envoy
(`--concurrency 1`, leaving the other core to Python) with one listener per filter; each listener's route
is answered by Envoy itself (`direct_response`), so only the filter in front differs:

- (a) no filter: Envoy answering directly, the ceiling;
- (b) gRPC ext_authz asking Watchword, a C3 static token (warm cache);
- (c) gRPC ext_authz asking the always-allow server, written the same way (grpc.aio, same interceptor);
- (d) Envoy's native `jwt_authn` verifying an ES256 JWT against an inline JWKS (no JWT cache);
- (e) gRPC ext_authz asking Watchword about an ES256 JWT of its own (C8, verified once then remembered);
- (f) HTTP ext_authz (`http_service`: the filter of clients/envoy/envoy-http.yaml, as deployed) asking
  Watchword, the C3 token of (b);
- (g) HTTP ext_authz asking Watchword, the C8 token of (e);
- (h) HTTP ext_authz asking a trivial always-allow server on the stack of Watchword's HTTP front door
  (a check that answers at once, on the E4 listener of ext_authz/http_server.py, one process).

Each case runs `wrk -t1` for the same duration and connections, in a rotated order per round; the median
round is printed, with the CPU time per request of the authorization server (its whole process tree) and
of Envoy, read from /proc. A case answering anything but 2xx stops the run: it would measure the wrong
thing. Then (a), (b), (f) and (d) are offered a fixed rate by bench/_open_loop.py (requests on a fixed
clock, latency from when each was due, keep-alive connections) and p50/p99 are printed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvloop
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import tree_cpu_seconds
from _open_loop import HttpCallError, HttpPool, Result, get_request, open_loop, percentile

from watchword.v1 import admin_pb2, common_pb2

from support.envoy import EnvoyProcess
from support.server import WatchwordProcess
from support.tokens import watchword_token

ROOT = Path(__file__).resolve().parent.parent
HTTP_EXAMPLE = ROOT / "clients" / "envoy" / "envoy-http.yaml"
ROUTE = """
[[routes]]
method = "GET"
path = "/bench/{application_id}"
action = "application.get"
"""
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
EXT_AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
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
    "watchword_http": "(f) HTTP ext_authz -> Watchword, C3",
    "watchword_http_jwt": "(g) HTTP ext_authz -> Watchword, C8",
    "allow_http": "(h) HTTP ext_authz -> always-allow",
}
# (label, numerator, denominator, the target for it: at least this, or None)
RATIOS = [
    ("(b)/(c) Watchword vs always-allow, gRPC", "watchword", "allow", None),
    ("(e)/(d) Watchword C8 gRPC vs jwt_authn", "watchword_jwt", "jwt_authn", None),
    ("(f)/(b) HTTP vs gRPC front door", "watchword_http", "watchword", 2.0),
    ("(f)/(h) Watchword vs always-allow, HTTP", "watchword_http", "allow_http", 0.8),
    ("(g)/(d) Watchword C8 HTTP vs jwt_authn", "watchword_http_jwt", "jwt_authn", 0.5),
]
CPU_LABEL = "Watchword CPU µs per HTTP check, C3 warm"
# The bound on Watchword's CPU per HTTP check (C3, warm), µs.
CPU_TARGET_US = 120.0
# The cases offered a fixed rate, open loop: (a) is the floor Envoy and the generator leave.
LATENCY_CASES = ["direct", "watchword", "watchword_http", "jwt_authn"]
# p99 of (f) at 1,000 requests/s should stay below this (ms): the figure OPA-Envoy publishes for that rate.
P99_TARGET_MS = 4.6
# Keep-alive connections of the open-loop generator (enough that a request rarely waits for one).
LATENCY_CONNECTIONS = 64
LATENCY_ERRORS = (HttpCallError, OSError)
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_REQUESTS = re.compile(r"(\d+) requests in")


def ext_authz_filter(cluster: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": EXT_AUTHZ,
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "status_on_error": {"code": "ServiceUnavailable"},
            "include_peer_certificate": False,
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": "2s"},
        },
    }


def http_ext_authz_filter(cluster: str) -> dict[str, Any]:
    """The ext_authz filter of the shipped HTTP-mode example (clients/envoy/envoy-http.yaml: its allowed
    headers, path prefix, timeout, fail closed) asking `cluster`, so the benchmark measures what an
    operator deploys."""
    config = yaml.safe_load(HTTP_EXAMPLE.read_text(encoding="utf-8"))
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    filters = chain["filters"][0]["typed_config"]["http_filters"]
    found = next(item for item in filters if item["name"] == "envoy.filters.http.ext_authz")
    found["typed_config"]["http_service"]["server_uri"]["cluster"] = cluster
    return dict(found)


def http_path_prefix() -> str:
    """The example's `path_prefix`, which Watchword's `ext_authz_http_path_prefix` must equal."""
    service = http_ext_authz_filter("any")["typed_config"]["http_service"]
    return str(service.get("path_prefix", ""))


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


def listener(name: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
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


def cluster(name: str, port: int, http2: bool) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }
    # gRPC on HTTP/2; the HTTP mode on HTTP/1.1, as in the example, with its idle timeout below
    # Watchword's, so that Envoy, not the server, closes a connection left idle while other cases run.
    protocol = {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    options = {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": protocol,
    }
    if not http2:
        options["common_http_protocol_options"] = {"idle_timeout": "5s"}
    cluster["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options
    }
    return cluster


@dataclass(frozen=True)
class Ports:
    watchword: int  # gRPC
    watchword_http: int  # the HTTP ext_authz listener
    allow: int
    allow_http: int


def envoy_config(ports: Ports, jwks: dict[str, Any]) -> dict[str, Any]:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                listener("direct", []),
                listener("watchword", [ext_authz_filter("watchword")]),
                listener("allow", [ext_authz_filter("allow")]),
                listener("jwt_authn", [_jwt_authn(jwks)]),
                listener("watchword_http", [http_ext_authz_filter("watchword_http")]),
                listener("allow_http", [http_ext_authz_filter("allow_http")]),
            ],
            "clusters": [
                cluster("watchword", ports.watchword, http2=True),
                cluster("allow", ports.allow, http2=True),
                cluster("watchword_http", ports.watchword_http, http2=False),
                cluster("allow_http", ports.allow_http, http2=False),
            ],
        },
    }


def credentials(server: WatchwordProcess) -> tuple[str, str, str]:
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Target:
    """Where a case sends its requests, with which token, and which authorization server Envoy asks."""

    port: int
    path: str
    token: str
    server_pid: int | None  # None when Envoy decides alone

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass(frozen=True)
class Sample:
    """One wrk run of one case: its rate, and CPU µs per request of its server (if any) and of Envoy."""

    rate: float
    server_us: float | None
    envoy_us: float


def wrk(target: Target, duration: int, connections: int) -> tuple[float, int]:
    """Requests per second, and how many requests wrk completed."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    for name, value in target.headers.items():
        command += ["-H", f"{name}: {value}"]
    result = subprocess.run(
        [*command, target.url], capture_output=True, text=True, timeout=duration + 60, check=True
    )
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise SystemExit(f"wrk saw errors for {target.url}:\n{result.stdout}")
    rate, requests = _RATE.search(result.stdout), _REQUESTS.search(result.stdout)
    if rate is None or requests is None:
        raise SystemExit(f"wrk printed no rate for {target.url}:\n{result.stdout}")
    return float(rate.group(1)), int(requests.group(1))


def sample(target: Target, envoy_pid: int, duration: int, connections: int) -> Sample:
    pid = target.server_pid
    server_before = tree_cpu_seconds(pid) if pid is not None else 0.0
    envoy_before = tree_cpu_seconds(envoy_pid)
    rate, requests = wrk(target, duration, connections)
    envoy_us = (tree_cpu_seconds(envoy_pid) - envoy_before) / requests * 1e6
    server_us = (tree_cpu_seconds(pid) - server_before) / requests * 1e6 if pid is not None else None
    return Sample(rate, server_us, envoy_us)


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _start_always_allow(stack: ExitStack, *args: str) -> tuple[int, int]:
    """Start bench/always_allow_ext_authz.py (stopped with `stack`); its port and pid."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "always_allow_ext_authz.py"), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    stack.callback(_stop, process)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if match is None:
        raise SystemExit(f"the always-allow server {args} did not start: {line!r}")
    return int(match.group(1)), process.pid


def watchword_server(directory: Path, http_port: int) -> WatchwordProcess:
    """Watchword with the route table, its gRPC port and its HTTP ext_authz listener on `http_port`.
    The audit log (on, as by default) goes to a file, as an operator keeps it: on stdout this process
    would read every line through the pipe, on the cores the benchmark measures."""
    (directory / "watchword.toml").write_text(ROUTE, encoding="utf-8")
    env = {
        "WATCHWORD_LOG_LEVEL": "WARNING",
        "WATCHWORD_HTTP_ENABLED": "false",
        "WATCHWORD_AUDIT_LOG_FILE": str(directory / "audit.jsonl"),
        "WATCHWORD_EXT_AUTHZ_HTTP_HOST": "127.0.0.1",
        "WATCHWORD_EXT_AUTHZ_HTTP_PORT": str(http_port),
        "WATCHWORD_EXT_AUTHZ_HTTP_PATH_PREFIX": http_path_prefix(),
    }
    return WatchwordProcess(directory / "data", env=env, args=["--config", str(directory / "watchword.toml")])


def _targets(
    listeners: dict[str, int], path: str, tokens: tuple[str, str, str], pids: tuple[int, int, int]
) -> dict[str, Target]:
    static_token, own_jwt, external_jwt = tokens
    watchword, allow, allow_http = pids
    return {
        "direct": Target(listeners["direct"], path, "", None),
        "watchword": Target(listeners["watchword"], path, static_token, watchword),
        "allow": Target(listeners["allow"], path, static_token, allow),
        "jwt_authn": Target(listeners["jwt_authn"], path, external_jwt, None),
        "watchword_jwt": Target(listeners["watchword"], path, own_jwt, watchword),
        "watchword_http": Target(listeners["watchword_http"], path, static_token, watchword),
        "watchword_http_jwt": Target(listeners["watchword_http"], path, own_jwt, watchword),
        "allow_http": Target(listeners["allow_http"], path, static_token, allow_http),
    }


@contextmanager
def bench_setup(directory: Path) -> Iterator[tuple[dict[str, Target], int]]:
    """Every server and Envoy, running: each case's target (checked: it answers 200, so it is warm)
    and Envoy's pid."""
    with ExitStack() as stack:
        allow_port, allow_pid = _start_always_allow(stack)
        allow_http_port, allow_http_pid = _start_always_allow(stack, "--http")
        watchword_http_port = free_port()
        watchword = stack.enter_context(watchword_server(directory, watchword_http_port))
        assert watchword.process is not None
        ports = Ports(watchword.port, watchword_http_port, allow_port, allow_http_port)
        application, static_token, own_jwt = credentials(watchword)
        jwks, external_jwt = _external_jwt()
        envoy = stack.enter_context(EnvoyProcess(envoy_config(ports, jwks), directory / "envoy"))
        assert envoy.process is not None
        targets = _targets(
            envoy.listeners,
            f"/bench/{application}",
            (static_token, own_jwt, external_jwt),
            (watchword.process.pid, allow_pid, allow_http_pid),
        )
        for name, target in targets.items():
            answer = httpx.get(target.url, headers=target.headers, timeout=10)
            if answer.status_code != 200:
                raise SystemExit(f"{name}: {answer.status_code} {answer.text}")
        yield targets, envoy.process.pid


def throughput(
    targets: dict[str, Target], envoy_pid: int, duration: int, connections: int, rounds: int
) -> dict[str, list[Sample]]:
    """Every case once per round, the order rotated round by round."""
    samples: dict[str, list[Sample]] = {name: [] for name in targets}
    names = list(targets)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(sample(targets[name], envoy_pid, duration, connections))
    return samples


async def _latency(target: Target, rate: float, seconds: float) -> Result:
    request = get_request(target.path, target.headers)
    async with HttpPool("127.0.0.1", target.port, request, LATENCY_CONNECTIONS) as pool:
        await open_loop(lambda: pool.call, rate, min(seconds, 0.5), LATENCY_ERRORS)  # warm-up
        return await open_loop(lambda: pool.call, rate, seconds, LATENCY_ERRORS)


def latencies(targets: dict[str, Target], rate: float, seconds: float) -> dict[str, Result]:
    """LATENCY_CASES offered `rate` requests/s, one after the other. The generator runs on uvloop: its
    timers fire closer to the schedule than asyncio's (its own lateness is printed beside)."""
    return {name: uvloop.run(_latency(targets[name], rate, seconds)) for name in LATENCY_CASES}


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _us(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def print_throughput(samples: dict[str, list[Sample]], args: argparse.Namespace) -> None:
    rates = {name: statistics.median(run.rate for run in runs) for name, runs in samples.items()}
    print(
        f"Envoy in front: wrk -t1 -c{args.connections} -d{args.duration}s per case, Envoy --concurrency 1, "
        f"median of {args.rounds} round(s)"
    )
    print(f"{'case':<40} {'requests/s':>10} {'ratio to (a)':>13} {'server µs/req':>14} {'Envoy µs/req':>13}")
    for name, label in CASES.items():
        server_us = _median([run.server_us for run in samples[name]])
        envoy_us = _median([run.envoy_us for run in samples[name]])
        print(
            f"{label:<40} {rates[name]:>10.0f} {rates[name] / rates['direct']:>13.2f} "
            f"{_us(server_us):>14} {_us(envoy_us):>13}"
        )
    print(f"{'ratio (of the rates above)':<40} {'measured':>10} {'target':>13}")
    for label, numerator, denominator, target in RATIOS:
        wanted = f">= {target}" if target is not None else "-"
        print(f"{label:<40} {rates[numerator] / rates[denominator]:>10.2f} {wanted:>13}")
    cpu = _median([run.server_us for run in samples["watchword_http"]])
    print(f"{CPU_LABEL:<40} {_us(cpu):>10} {f'<= {CPU_TARGET_US:g}':>13}")


def print_latencies(results: dict[str, Result], args: argparse.Namespace) -> None:
    print(
        f"Open loop through Envoy: {args.latency_rate:g} requests/s offered for {args.latency_seconds:g} s "
        f"per case, {LATENCY_CONNECTIONS} keep-alive connections, latency from when each request was due"
    )
    columns = ("sent/s", "p50 ms", "p99 ms", "max ms", "errors", "late p99 ms")
    print(f"{'case':<40} " + " ".join(f"{column:>11}" for column in columns))
    for name, result in results.items():
        measured = result.latencies_ms or [float("nan")]
        print(
            f"{CASES[name]:<40} {result.sent / result.seconds:>11.0f} "
            f"{statistics.median(measured):>11.2f} {percentile(measured, 0.99):>11.2f} "
            f"{max(measured):>11.2f} {result.errors:>11} {percentile(result.late_ms, 0.99):>11.2f}"
        )
    print(f"target: p99 of (f) below {P99_TARGET_MS} ms at 1000 requests/s (OPA-Envoy's published figure)")


def run(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: `apt-get install wrk` (bash .ci/run installs it)")
    with tempfile.TemporaryDirectory() as scratch, bench_setup(Path(scratch)) as (targets, envoy_pid):
        samples = throughput(targets, envoy_pid, args.duration, args.connections, args.rounds)
        results = latencies(targets, args.latency_rate, args.latency_seconds)
    print_throughput(samples, args)
    print_latencies(results, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per case and round")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the median is printed")
    parser.add_argument("--latency-rate", type=float, default=1000, help="requests/s offered, open loop")
    parser.add_argument("--latency-seconds", type=float, default=5, help="seconds offered per case")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
