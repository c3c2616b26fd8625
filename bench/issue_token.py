"""Tokens issued per second for I1 (API key exchange) and I2 (client credentials), next to a no-op RPC.

    .venv/bin/python bench/issue_token.py [--calls 2000] [--concurrency 16] [--rounds 3]

Starts a real `watchword serve`, creates an API key and an OAuth client (client_secret_post), then
drives IssueToken for each grant and the gRPC health check (a no-op RPC on the same server) with the
same load, each run between two no-op runs, in rotated rounds; the medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import BASELINE, Call, Row, interleaved, print_table

from watchword.v1 import admin_pb2, auth_pb2, auth_pb2_grpc, common_pb2

from support.server import WatchwordProcess


def _requests(server: WatchwordProcess) -> dict[str, auth_pb2.IssueTokenRequest]:
    admin, md = server.admin(), server.admin_metadata
    org = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="bench"), metadata=md).id

    def create(kind: int, **fields: object) -> admin_pb2.CreateCredentialResponse:
        request = admin_pb2.CreateCredentialRequest(kind=kind, organization_id=org, name="bench", **fields)
        return admin.CreateCredential(request, metadata=md)

    key = create(common_pb2.CREDENTIAL_KIND_API_KEY, permissions=["event.send"])
    client = create(common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT, permissions=["event.send"], client_auth_method=2)
    auth = auth_pb2.ClientAuthentication(client_id=client.credential.id, client_secret=client.secret)
    return {
        "I1 API key exchange": auth_pb2.IssueTokenRequest(
            api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret)
        ),
        "I2 client credentials (post)": auth_pb2.IssueTokenRequest(
            client_credentials=auth_pb2.ClientCredentialsGrant(client=auth)
        ),
    }


async def _run(
    address: str, requests: dict[str, auth_pb2.IssueTokenRequest], calls: int, concurrency: int, rounds: int
) -> list[Row]:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for request in requests.values():  # every case really issues a token
            response = await auth.IssueToken(request, timeout=10)
            assert response.WhichOneof("result") == "token", response
        ping = health_pb2.HealthCheckRequest()
        cases: dict[str, Call] = {BASELINE: lambda: health.Check(ping, timeout=10)}
        for name, request in requests.items():
            cases[name] = lambda r=request: auth.IssueToken(r, timeout=10)
        return await interleaved(cases, calls, concurrency, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per case and round")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all cases; the median is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"WATCHWORD_LOG_LEVEL": "WARNING"}
        with WatchwordProcess(Path(tmp) / "data", env=env) as server:
            rows = asyncio.run(
                _run(server.address, _requests(server), args.calls, args.concurrency, args.rounds)
            )
    print_table(
        f"IssueToken: {args.calls} calls per case, {args.concurrency} in flight, "
        f"median of {args.rounds} rounds",
        "tokens/s",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
