"""SignOutbound calls per second with a warm token cache, next to a no-op RPC on the same server.

    .venv/bin/python bench/sign_outbound.py [--calls 2000] [--concurrency 16] [--rounds 3]

Starts a local token server (the tests' own) and a real `watchword serve`, creates O1, O5 and O3
outbound credentials, warms the O3 token cache, then drives SignOutbound for each and the gRPC health
check (a no-op RPC) with the same load, in rotated rounds; the median round is reported.
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

from _measure import BASELINE, Call, interleaved, print_table

from watchword.v1 import admin_pb2, auth_pb2, auth_pb2_grpc, common_pb2

from support.server import WatchwordProcess
from support.token_server import Client, TokenServer

BODY = b'{"type":"order.created","id":42}'


def _requests(
    server: WatchwordProcess, token_url: str
) -> tuple[dict[str, auth_pb2.SignOutboundRequest], tuple[tuple[str, str], ...]]:
    """The cases, and the caller's metadata: a static token of the organization holding `outbound.sign`,
    as the delivery service would hold."""
    admin, md = server.admin(), server.admin_metadata
    org = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="bench"), metadata=md).id

    def create(secrets: dict[str, str], **fields: object) -> str:
        credential = admin_pb2.OutboundCredential(organization_id=org, name="bench", **fields)
        request = admin_pb2.CreateOutboundCredentialRequest(
            credential=credential, secrets=admin_pb2.OutboundSecrets(**secrets)
        )
        return admin.CreateOutboundCredential(request, metadata=md).credential.id

    bearer = create({"bearer_token": "t"}, scheme=admin_pb2.OUTBOUND_SCHEME_BEARER)
    signed = create({}, scheme=admin_pb2.OUTBOUND_SCHEME_NONE, sign_payload=True)
    oauth = create(
        {"client_secret": "s3cret"},
        scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
        token_url=token_url,
        client_id="bench",
        client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
    )

    def request(credential_id: str) -> auth_pb2.SignOutboundRequest:
        return auth_pb2.SignOutboundRequest(
            outbound_credential_id=credential_id,
            method="POST",
            url="https://customer.example/hooks",
            body=BODY,
        )

    caller = admin.CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_STATIC_TOKEN,
            organization_id=org,
            name="delivery",
            permissions=["outbound.sign"],
        ),
        metadata=md,
    ).secret
    cases = {
        "O1 Bearer": request(bearer),
        "O5 Standard Webhooks signature": request(signed),
        "O3 client credentials (warm cache)": request(oauth),
    }
    return cases, (("authorization", f"Bearer {caller}"),)


async def _run(
    address: str,
    requests: dict[str, auth_pb2.SignOutboundRequest],
    caller: tuple[tuple[str, str], ...],
    calls: int,
    concurrency: int,
    rounds: int,
) -> list[tuple[str, float]]:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for request in requests.values():  # warm the caches and check every case really signs
            response = await auth.SignOutbound(request, metadata=caller, timeout=10)
            assert response.WhichOneof("result") == "signed", response
        ping = health_pb2.HealthCheckRequest()
        cases: dict[str, Call] = {BASELINE: lambda: health.Check(ping, timeout=10)}
        for name, request in requests.items():
            cases[name] = lambda r=request: auth.SignOutbound(r, metadata=caller, timeout=10)
        return await interleaved(cases, calls, concurrency, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per case and round")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all cases; the median is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, TokenServer() as token_server:
        token_server.register(Client(client_id="bench", secret="s3cret"))
        env = {"WATCHWORD_LOG_LEVEL": "WARNING", "WATCHWORD_OUTBOUND_ALLOW_PRIVATE_TOKEN_URLS": "true"}
        with WatchwordProcess(Path(tmp) / "data", env=env) as server:
            requests, caller = _requests(server, token_server.token_url)
            rows = asyncio.run(
                _run(server.address, requests, caller, args.calls, args.concurrency, args.rounds)
            )
        fetches = token_server.request_count
    print_table(
        f"SignOutbound: {args.calls} calls per case, {args.concurrency} in flight, "
        f"median of {args.rounds} rounds, {fetches} token fetch(es)",
        "calls/s",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
