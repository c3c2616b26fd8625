"""Authenticate calls per second for each credential kind, next to a no-op RPC on the same server.

    .venv/bin/python bench/authenticate.py [--calls 500] [--concurrency 32] [--rounds 7]

Starts a real `watchword serve` on a free loopback port (with a local OIDC issuer for C1), creates one
credential of each kind, warms the cache, then drives each case with the same number of concurrent
asyncio gRPC calls from one client process. The baseline is the gRPC health check
(`grpc.health.v1.Health/Check`): it goes through the same server interceptors as Authenticate and does
no work of its own. Every case runs between two runs of the no-op and its ratio is its calls/s over
theirs, so both sides share the same machine at the same moment; the median over the rotated rounds
is shown.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cases import run_rpc_benchmark


def main(argv: list[str] | None = None) -> int:
    return run_rpc_benchmark("Authenticate", __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
