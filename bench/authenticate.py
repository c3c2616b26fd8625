"""Authenticate calls per second for each credential kind, next to a no-op RPC on the same server.

    .venv/bin/python bench/authenticate.py [--calls 5000] [--concurrency 32]

Starts a real `watchword serve` on a free loopback port (with a local OIDC issuer for C1), creates one
credential of each kind, warms the cache, then drives each case with the same number of concurrent
asyncio gRPC calls from one client process. The baseline is the gRPC health check
(`grpc.health.v1.Health/Check`), which does no work; the ratio is kind calls/s over baseline calls/s, so
both sides share the same machine and the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import tempfile
import time
from pathlib import Path

import grpc
import jwt
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import BASELINE, Call, interleaved, print_table

from watchword.v1 import admin_pb2, auth_pb2, auth_pb2_grpc, common_pb2

from support.jwks_server import JwksServer
from support.server import WatchwordProcess
from support.tokens import watchword_token


def _http(*headers: tuple[str, str]) -> auth_pb2.AuthenticateRequest:
    http = common_pb2.HttpRequest(
        method="POST", path="/v1/events", headers=[common_pb2.KeyValue(name=n, value=v) for n, v in headers]
    )
    return auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(http=http))


def _credentials(server: WatchwordProcess, idp: JwksServer) -> dict[str, auth_pb2.AuthenticateRequest]:
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
    idp_token = idp.sign({"iss": idp.issuer, "aud": "api", "sub": "user", "iat": now, "exp": lifetime})
    tenant_token = jwt.encode(
        {
            "sub": "s",
            "iat": now,
            "exp": lifetime,
            "iss": "tenant",
            "jti": "j",
            "permissions": ["object.publish"],
        },
        tenant_secret.secret.encode(),
        headers={"kid": tenant_secret.credential.id},
    )
    subject_token = jwt.encode(
        {"iat": now, "exp": lifetime, "io.hull.asUser": {"id": "u"}}, connector.secret.encode()
    )
    own_token = watchword_token(server.data_dir, org.id, exp=lifetime)
    return {
        "C2 application secret (Bearer)": _http(("authorization", f"Bearer {app_secret.secret}")),
        "C3 static token (Bearer)": _http(("authorization", f"Bearer {static.secret}")),
        "C5 API key (Bearer)": _http(("authorization", f"Bearer {api_key.secret}")),
        "C5 API key (Basic)": _http(("authorization", f"Basic {basic}")),
        "C6 connector (header pair)": _http(
            ("Hull-App-Id", connector.credential.id), ("Hull-Access-Token", connector.secret)
        ),
        "C1 external IdP JWT (ES256)": _http(("authorization", f"Bearer {idp_token}")),
        "C4 tenant JWT (HS256)": _http(("authorization", f"Bearer {tenant_token}")),
        "C7 subject JWT (HS256)": _http(
            ("Hull-App-Id", connector.credential.id), ("Hull-Access-Token", subject_token)
        ),
        "C8 Watchword token (ES256)": _http(("authorization", f"Bearer {own_token}")),
        "C9 OAuth client (Basic)": _http(("authorization", f"Basic {oauth_basic}")),
    }


async def _run(
    address: str, requests: dict[str, auth_pb2.AuthenticateRequest], calls: int, concurrency: int, rounds: int
) -> list[tuple[str, float]]:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for request in requests.values():  # warm the caches and check every case really authenticates
            response = await auth.Authenticate(request, timeout=10)
            assert response.WhichOneof("result") == "principal", response
        ping = health_pb2.HealthCheckRequest()
        cases: dict[str, Call] = {BASELINE: lambda: health.Check(ping, timeout=10)}
        for name, request in requests.items():
            cases[name] = lambda r=request: auth.Authenticate(r, timeout=10)
        return await interleaved(cases, calls, concurrency, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000, help="calls per case")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all cases; the median is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, JwksServer(algorithms=("ES256",)) as idp:
        config = Path(tmp) / "watchword.toml"
        config.write_text(
            f'log_level = "WARNING"\n[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\n'
            f'jwks_uri = "{idp.jwks_uri}"\nallow_insecure_http = true\n'
        )
        with WatchwordProcess(Path(tmp) / "data", args=["--config", str(config)]) as server:
            rows = asyncio.run(
                _run(server.address, _credentials(server, idp), args.calls, args.concurrency, args.rounds)
            )
    print_table(
        f"Authenticate, warm cache: {args.calls} calls per case, {args.concurrency} in flight, "
        f"median of {args.rounds} rounds",
        "calls/s",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
