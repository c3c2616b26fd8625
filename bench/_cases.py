"""One credential of every kind (C1-C9) on a real server, as the requests the benchmarks send.

Shared by bench/authenticate.py, bench/authorize.py, bench/per_call.py and bench/latency.py, so every
benchmark measures the same credentials: the same transports, the same token sizes, the same store.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
from _measure import BASELINE, Call, Row, cpu_seconds, interleaved, print_table, process_tree
from grpc_health.v1 import health_pb2, health_pb2_grpc

from watchword.v1 import admin_pb2, auth_pb2, auth_pb2_grpc, common_pb2

from support.jwks_server import JwksServer
from support.server import WatchwordProcess
from support.tokens import watchword_token

EVENT_TYPE = "user.created"


@dataclass(frozen=True)
class Case:
    """One credential kind: how it is presented, and an Authorize question it is asked."""

    credential: common_pb2.CredentialSource
    action: str
    resource: auth_pb2.Resource
    # Whether the rules should allow `action` on `resource` (C9 is refused: no rule lets an OAuth client
    # act on resources; it still takes the whole path).
    allowed: bool = True

    @property
    def authenticate(self) -> auth_pb2.AuthenticateRequest:
        return auth_pb2.AuthenticateRequest(credential=self.credential)

    @property
    def authorize(self) -> auth_pb2.AuthorizeRequest:
        return auth_pb2.AuthorizeRequest(
            credential=self.credential, action=self.action, resource=self.resource
        )


def server_config(idp: JwksServer, audit_log_file: Path, workers: int | None = None) -> str:
    """watchword.toml for a benchmark server: quiet logs, the audit log (on, as by default) in a file as an
    operator would keep it (on stdout the benchmark's own process would read every line through the pipe),
    `idp` as a C1 issuer whose `orgs` claim carries the user's roles, and `workers` processes if given."""
    return (
        f'log_level = "WARNING"\naudit_log_file = "{audit_log_file}"\n'
        + (f"workers = {workers}\n" if workers is not None else "")
        + f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\n'
        f'jwks_uri = "{idp.jwks_uri}"\nallow_insecure_http = true\norganizations_claim = "orgs"\n'
    )


def _http(*headers: tuple[str, str]) -> common_pb2.CredentialSource:
    http = common_pb2.HttpRequest(
        method="POST", path="/v1/events", headers=[common_pb2.KeyValue(name=n, value=v) for n, v in headers]
    )
    return common_pb2.CredentialSource(http=http)


def create_cases(server: WatchwordProcess, idp: JwksServer) -> dict[str, Case]:
    """Create an organization, an application and one credential of each kind through the admin API."""
    admin, md = server.admin(), server.admin_metadata
    org = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="bench"), metadata=md)
    app = admin.CreateApplication(
        admin_pb2.CreateApplicationRequest(organization_id=org.id, name="a"), metadata=md
    )

    def create(kind: int, **fields: object) -> admin_pb2.CreateCredentialResponse:
        request = admin_pb2.CreateCredentialRequest(kind=kind, organization_id=org.id, name="bench", **fields)
        return admin.CreateCredential(request, metadata=md)

    app_secret = create(common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET, application_id=app.id)
    api_key = create(common_pb2.CREDENTIAL_KIND_API_KEY, permissions=["event.send"], basic_auth_enabled=True)
    static = create(common_pb2.CREDENTIAL_KIND_STATIC_TOKEN, permissions=["object.publish"])
    connector = create(common_pb2.CREDENTIAL_KIND_CONNECTOR, permissions=["track"])
    tenant_secret = create(common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET, permissions=["object.publish"])
    oauth = create(common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT, client_auth_method=1, permissions=["event.send"])
    basic = base64.b64encode(f"{org.id}:{api_key.secret}".encode()).decode()
    oauth_basic = base64.b64encode(f"{oauth.credential.id}:{oauth.secret}".encode()).decode()
    now = int(time.time())
    lifetime = now + 3600
    idp_token = idp.sign(
        {
            "iss": idp.issuer,
            "aud": "api",
            "sub": "user",
            "iat": now,
            "exp": lifetime,
            "orgs": {org.id: ["editor"]},
        }
    )
    tenant_token = jwt.encode(
        {
            "sub": "s",
            "iat": now,
            "exp": lifetime,
            "iss": "tenant",
            "jti": "j",
            "permissions": ["object.publish"],
            "data_provider_patterns": ["obj-*"],
        },
        tenant_secret.secret.encode(),
        headers={"kid": tenant_secret.credential.id},
    )
    subject_token = jwt.encode(
        {"iat": now, "exp": lifetime, "io.hull.asUser": {"id": "u"}}, connector.secret.encode()
    )
    own_token = watchword_token(server.data_dir, org.id, exp=lifetime)
    event = auth_pb2.Resource(application_id=app.id, event_type=EVENT_TYPE)
    obj = auth_pb2.Resource(organization_id=org.id, object_id="obj-1")
    user = auth_pb2.Resource(organization_id=org.id, subject=common_pb2.Subject(type=1, id="u"))
    subject_pair = _http(("Hull-App-Id", connector.credential.id), ("Hull-Access-Token", subject_token))
    return {
        "C2 application secret (Bearer)": Case(
            _http(("authorization", f"Bearer {app_secret.secret}")), "event.send", event
        ),
        "C3 static token (Bearer)": Case(
            _http(("authorization", f"Bearer {static.secret}")), "object.publish", obj
        ),
        "C5 API key (Bearer)": Case(
            _http(("authorization", f"Bearer {api_key.secret}")), "event.send", event
        ),
        "C5 API key (Basic)": Case(_http(("authorization", f"Basic {basic}")), "event.send", event),
        "C6 connector (header pair)": Case(
            _http(("Hull-App-Id", connector.credential.id), ("Hull-Access-Token", connector.secret)),
            "track",
            user,
        ),
        "C1 external IdP JWT (ES256)": Case(
            _http(("authorization", f"Bearer {idp_token}")), "event.send", event
        ),
        "C4 tenant JWT (HS256)": Case(
            _http(("authorization", f"Bearer {tenant_token}")), "object.publish", obj
        ),
        "C7 subject JWT (HS256)": Case(subject_pair, "track", user),
        "C8 Watchword token (ES256)": Case(
            _http(("authorization", f"Bearer {own_token}")), "event.send", event
        ),
        "C9 OAuth client (Basic)": Case(
            _http(("authorization", f"Basic {oauth_basic}")), "event.send", event, allowed=False
        ),
    }


def bench_server(tmp: Path, idp: JwksServer, workers: int | None = None) -> WatchwordProcess:
    """A `watchword serve` (not yet started) on a free port, configured by `server_config`."""
    config = tmp / "watchword.toml"
    config.write_text(server_config(idp, tmp / "audit.jsonl", workers))
    return WatchwordProcess(tmp / "data", args=["--config", str(config)])


def _channels(address: str, count: int) -> list[grpc.aio.Channel]:
    """`count` channels, each on its own connection (a local subchannel pool), so that worker processes
    sharing the port through SO_REUSEPORT each get some: the kernel spreads connections, not calls."""
    return [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(count)
    ]


async def _drive(
    address: str, rpc: str, cases: dict[str, Case], args: argparse.Namespace, pid: int
) -> list[Row]:
    channels = _channels(address, args.channels)
    try:
        turns = itertools.cycle(
            [(auth_pb2_grpc.AuthServiceStub(c), health_pb2_grpc.HealthStub(c)) for c in channels]
        )
        ping = health_pb2.HealthCheckRequest()
        timed: dict[str, Call] = {BASELINE: lambda: next(turns)[1].Check(ping, timeout=10)}
        auth = next(turns)[0]
        for name, case in cases.items():  # warm the caches and check every case gets the answer it should
            if rpc == "Authenticate":
                request: object = case.authenticate
                response = await auth.Authenticate(request, timeout=10)
                assert response.WhichOneof("result") == "principal", (name, response)
            else:
                request = case.authorize
                response = await auth.Authorize(request, timeout=10)
                assert response.decision.allowed == case.allowed, (name, response)
            timed[name] = lambda r=request: getattr(next(turns)[0], rpc)(r, timeout=10)
        return await interleaved(timed, args.calls, args.concurrency, args.rounds, server_pid=pid)
    finally:
        for channel in channels:
            await channel.close()


def _run_one(rpc: str, args: argparse.Namespace, workers: int | None) -> list[Row]:
    """The benchmark on one fresh server (with `workers` processes if given); its table printed."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        JwksServer(algorithms=("ES256",)) as idp,
        bench_server(Path(tmp), idp, workers) as server,
    ):
        assert server.process is not None
        cases = create_cases(server, idp)
        before = {pid: cpu_seconds(pid) for pid in process_tree(server.process.pid)}
        rows = asyncio.run(_drive(server.address, rpc, cases, args, server.process.pid))
        spent = {pid: cpu_seconds(pid) - used for pid, used in before.items()}
    label = f", {workers} worker process(es)" if workers is not None else ""
    print_table(
        f"{rpc}, warm cache{label}: {args.calls} calls per case and round, {args.concurrency} in flight "
        f"over {args.channels} connection(s), median of {args.rounds} rounds",
        "calls/s",
        rows,
    )
    if workers is not None:
        shares = ", ".join(f"pid {pid} {seconds:.1f} s" for pid, seconds in spent.items())
        print(f"server CPU by process during the run (the one started first, then below it): {shares}")
    return rows


def print_workers(rpc: str, by_workers: dict[int, list[Row]]) -> None:
    """Calls/s and server CPU per call (every worker's) for each worker count, medians over the kinds, and
    what N workers would give on N cores of their own (N * 1e6 / CPU µs: the cores the only limit)."""
    print(f"{rpc} by worker processes, median over the credential kinds")
    print(f"{'workers':<34} {'calls/s':>10} {'server CPU µs':>14} {'N cores, on paper':>18}")
    for workers, rows in by_workers.items():
        kinds = [row for row in rows if row[0] != BASELINE]
        rate = statistics.median(row[1] for row in kinds)
        cpu = statistics.median(row[3] or 0.0 for row in kinds)
        print(f"{workers:<34} {rate:>10.0f} {cpu:>14.1f} {workers * 1e6 / cpu:>18.0f}")


def run_rpc_benchmark(rpc: str, doc: str, argv: list[str] | None) -> int:
    """The command line of bench/authenticate.py and bench/authorize.py: `rpc` per kind against the
    no-op, on one server, in rotated rounds; with `--workers N [N ...]`, once per worker count."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="calls per case and round")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight at once")
    parser.add_argument("--rounds", type=int, default=7, help="rounds over all cases; the median is shown")
    parser.add_argument(
        "--workers", type=int, nargs="+", help="worker processes of the server (a fresh server for each)"
    )
    parser.add_argument("--channels", type=int, help="client connections (default: 1, 8 with --workers)")
    args = parser.parse_args(argv)
    if args.channels is None:
        args.channels = 8 if args.workers else 1
    if not args.workers:
        _run_one(rpc, args, None)
        return 0
    by_workers = {workers: _run_one(rpc, args, workers) for workers in args.workers}
    print_workers(rpc, by_workers)
    return 0
