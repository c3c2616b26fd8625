"""Latency at a fixed offered rate (open loop), and the peak memory of the replica under that load.

    .venv/bin/python bench/latency.py [--rates 500 1000] [--seconds 5]

Starts a real `watchword serve` (bench/_cases.py: one credential of each kind, C1 from a local OIDC
issuer), warms its caches, then for each rate sends calls on a fixed schedule whatever the answers —
open loop: a slow answer does not slow the sending, so queueing shows in the figures instead of hiding
(no coordinated omission). A call's latency runs from the moment it was due to be sent to its answer.
Cases: the no-op (`grpc.health.v1.Health/Check`), Authenticate and Authorize over every credential
kind in turn. Then the server's peak resident memory (`VmHWM` in /proc/PID/status) after all the load,
next to its resident memory once started and warmed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cases import Case, bench_server, create_cases
from _open_loop import Call, Result, open_loop, percentile

from watchword.v1 import auth_pb2_grpc

from support.jwks_server import JwksServer

NOOP = "no-op (Health/Check)"
ERRORS = (grpc.aio.AioRpcError,)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures


async def _measure(
    address: str, cases: dict[str, Case], rates: list[float], seconds: float
) -> list[tuple[str, float, Result]]:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        ping = health_pb2.HealthCheckRequest()
        authenticate = [case.authenticate for case in cases.values()]
        authorize = [case.authorize for case in cases.values()]
        for request in authenticate:  # warm every cache
            await auth.Authenticate(request, timeout=10)
        for request in authorize:
            await auth.Authorize(request, timeout=10)

        def noop() -> Callable[[], Call]:
            return lambda: lambda: health.Check(ping, timeout=10)

        def cycling(method: Callable[..., Awaitable[object]], requests: list[object]) -> Callable[[], Call]:
            turns = itertools.cycle(requests)

            def next_call() -> Call:
                request = next(turns)
                return lambda: method(request, timeout=10)

            return next_call

        rows = []
        await open_loop(noop(), 200, 0.5, ERRORS)  # warm the channel
        for rate in rates:
            for name, make in (
                (NOOP, noop),
                ("Authenticate, every kind in turn", lambda: cycling(auth.Authenticate, authenticate)),
                ("Authorize, every kind in turn", lambda: cycling(auth.Authorize, authorize)),
            ):
                rows.append((name, rate, await open_loop(make(), rate, seconds, ERRORS)))
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1000], help="offered calls/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each rate is offered")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as tmp,
        JwksServer(algorithms=("ES256",)) as idp,
        bench_server(Path(tmp), idp) as server,
    ):
        assert server.process is not None
        cases = create_cases(server, idp)
        before = memory_kib(server.process.pid)
        rows = asyncio.run(_measure(server.address, cases, args.rates, args.seconds))
        after = memory_kib(server.process.pid)
    print(f"Latency at a fixed offered rate (open loop), {args.seconds:g} s per rate and case")
    columns = ("offered/s", "sent/s", "p50 ms", "p99 ms", "max ms", "errors")
    print(f"{'case':<34} " + " ".join(f"{column:>9}" for column in columns))
    for name, rate, result in rows:
        latencies = result.latencies_ms or [float("nan")]
        print(
            f"{name:<34} {rate:>9.0f} {result.sent / result.seconds:>9.0f} "
            f"{statistics.median(latencies):>9.2f} {percentile(latencies, 0.99):>9.2f} "
            f"{max(latencies):>9.2f} {result.errors:>9}"
        )
    print(
        f"server memory: {before['VmRSS'] / 1024:.1f} MiB resident once started, peak (VmHWM) "
        f"{after['VmHWM'] / 1024:.1f} MiB after the load"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
