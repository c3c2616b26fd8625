"""One credential of every kind (C1-C9) on a real server, as the requests the benchmarks send.

Shared by bench/authenticate.py, bench/authorize.py, bench/per_call.py and bench/latency.py, so every
benchmark measures the same credentials: the same transports, the same token sizes, the same store.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
from _measure import BASELINE, Call, Row, interleaved, print_table
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


def server_config(idp: JwksServer, audit_log_file: Path) -> str:
    """watchword.toml for a benchmark server: quiet logs, the audit log (on, as by default) in a file as an
    operator would keep it (on stdout the benchmark's own process would read every line through the pipe),
    and `idp` as a C1 issuer whose `orgs` claim carries the user's roles."""
    return (
        f'log_level = "WARNING"\naudit_log_file = "{audit_log_file}"\n'
        f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\n'
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


def bench_server(tmp: Path, idp: JwksServer) -> WatchwordProcess:
    """A `watchword serve` (not yet started) on a free port, configured by `server_config`."""
    config = tmp / "watchword.toml"
    config.write_text(server_config(idp, tmp / "audit.jsonl"))
    return WatchwordProcess(tmp / "data", args=["--config", str(config)])


async def _drive(
    address: str, rpc: str, cases: dict[str, Case], calls: int, concurrency: int, rounds: int, pid: int
) -> list[Row]:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        ping = health_pb2.HealthCheckRequest()
        timed: dict[str, Call] = {BASELINE: lambda: health.Check(ping, timeout=10)}
        for name, case in cases.items():  # warm the caches and check every case gets the answer it should
            if rpc == "Authenticate":
                request: object = case.authenticate
                response = await auth.Authenticate(request, timeout=10)
                assert response.WhichOneof("result") == "principal", (name, response)
            else:
                request = case.authorize
                response = await auth.Authorize(request, timeout=10)
                assert response.decision.allowed == case.allowed, (name, response)
            method = getattr(auth, rpc)
            timed[name] = lambda m=method, r=request: m(r, timeout=10)
        return await interleaved(timed, calls, concurrency, rounds, server_pid=pid)


def run_rpc_benchmark(rpc: str, doc: str, argv: list[str] | None) -> int:
    """The command line of bench/authenticate.py and bench/authorize.py: `rpc` per kind against the
    no-op, on one server, in rotated rounds."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="calls per case and round")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight at once")
    parser.add_argument("--rounds", type=int, default=7, help="rounds over all cases; the median is shown")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as tmp,
        JwksServer(algorithms=("ES256",)) as idp,
        bench_server(Path(tmp), idp) as server,
    ):
        assert server.process is not None
        cases = create_cases(server, idp)
        rows = asyncio.run(
            _drive(server.address, rpc, cases, args.calls, args.concurrency, args.rounds, server.process.pid)
        )
    print_table(
        f"{rpc}, warm cache: {args.calls} calls per case and round, {args.concurrency} in flight, "
        f"median of {args.rounds} rounds",
        "calls/s",
        rows,
    )
    return 0
