"""Does Watchword's server gain from uvloop? The same paths on two servers, one on asyncio's own event loop
and one on uvloop, measured in turns in one run.

    .venv/bin/python bench/event_loop.py [--duration 5] [--connections 16] [--calls 2000] [--rounds 3]

Starts two Watchwords alike but for the loop (uvloop through bench/_uvloop/sitecustomize.py on the
second one's PYTHONPATH; checked in /proc/PID/maps), and one Envoy (`--concurrency 1`) with a gRPC and
an HTTP ext_authz listener for each. Paths:

- Check through Envoy, gRPC ext_authz, a C3 static token (warm), driven by wrk;
- Check through Envoy, HTTP ext_authz (the E4 front door shares the gRPC server's loop), same token;
- the no-op (`grpc.health.v1.Health/Check`), Authorize with the C3 token and with a C8 token, from a
  grpc.aio client (asyncio) with `--concurrency` calls in flight.

Every round runs each path on both servers back to back (which goes first alternates), and the medians
over the rounds are printed: the rates, the server's CPU µs per call (from /proc, less noisy than rates
on a shared machine), uvloop's over asyncio's, and Authorize's ratio to the no-op under each loop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Call, rate, tree_cpu_seconds
from envoy_ext_authz import (
    Target,
    cluster,
    credentials,
    ext_authz_filter,
    free_port,
    http_ext_authz_filter,
    listener,
    sample,
    watchword_server,
)

from watchword.v1 import auth_pb2, auth_pb2_grpc, common_pb2

from support.envoy import EnvoyProcess
from support.server import WatchwordProcess

LOOPS = ("asyncio", "uvloop")
UVLOOP_SITE = Path(__file__).resolve().parent / "_uvloop"
ENVOY_PATHS = {
    "grpc": "Check via Envoy, gRPC ext_authz, C3",
    "http": "Check via Envoy, HTTP ext_authz, C3",
}
RPC_PATHS = {
    "noop": "no-op Health/Check, gRPC",
    "authorize_c3": "Authorize C3, gRPC",
    "authorize_c8": "Authorize C8, gRPC",
}


@dataclass(frozen=True)
class Server:
    """One of the two Watchwords: its pid, gRPC address, and a target per Envoy path."""

    pid: int
    address: str
    targets: dict[str, Target]
    authorize: dict[str, auth_pb2.AuthorizeRequest]


def runs_uvloop(pid: int) -> bool:
    """Whether uvloop's extension is loaded in the process (every worker below it shares the setting)."""
    return "/uvloop/loop." in Path(f"/proc/{pid}/maps").read_text()


def _envoy_config(ports: dict[str, tuple[int, int]]) -> dict[str, Any]:
    listeners, clusters = [], []
    for loop, (grpc_port, http_port) in ports.items():
        listeners += [
            listener(f"{loop}_grpc", [ext_authz_filter(f"{loop}_grpc")]),
            listener(f"{loop}_http", [http_ext_authz_filter(f"{loop}_http")]),
        ]
        clusters += [
            cluster(f"{loop}_grpc", grpc_port, http2=True),
            cluster(f"{loop}_http", http_port, http2=False),
        ]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def _start(stack: ExitStack, directory: Path, loop: str) -> tuple[WatchwordProcess, int]:
    directory.mkdir()
    http_port = free_port()
    watchword = watchword_server(directory, http_port)
    if loop == "uvloop":
        watchword.extra_env["PYTHONPATH"] = str(UVLOOP_SITE)
    stack.enter_context(watchword)
    assert watchword.process is not None
    if runs_uvloop(watchword.process.pid) != (loop == "uvloop"):
        raise SystemExit(f"the {loop} server does not run the loop it should")
    return watchword, http_port


def _authorize(application: str, token: str) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=common_pb2.CredentialSource(
            http=common_pb2.HttpRequest(
                method="GET",
                path=f"/bench/{application}",
                headers=[common_pb2.KeyValue(name="authorization", value=f"Bearer {token}")],
            )
        ),
        action="application.get",
        resource=auth_pb2.Resource(application_id=application),
    )


@contextmanager
def bench_setup(directory: Path) -> Iterator[tuple[dict[str, Server], int]]:
    """Both servers and Envoy, running: each server's paths, and Envoy's pid."""
    with ExitStack() as stack:
        started = {loop: _start(stack, directory / loop, loop) for loop in LOOPS}
        ports = {loop: (watchword.port, http_port) for loop, (watchword, http_port) in started.items()}
        envoy = stack.enter_context(EnvoyProcess(_envoy_config(ports), directory / "envoy"))
        servers = {}
        for loop, (watchword, _port) in started.items():
            assert watchword.process is not None
            application, static_token, own_jwt = credentials(watchword)
            path, pid = f"/bench/{application}", watchword.process.pid
            targets = {
                kind: Target(envoy.listeners[f"{loop}_{kind}"], path, static_token, pid)
                for kind in ENVOY_PATHS
            }
            requests = {
                "authorize_c3": _authorize(application, static_token),
                "authorize_c8": _authorize(application, own_jwt),
            }
            servers[loop] = Server(pid, watchword.address, targets, requests)
        assert envoy.process is not None
        yield servers, envoy.process.pid


@dataclass(frozen=True)
class Figures:
    rate: float
    cpu_us: float


async def _rpc_figures(
    server: Server, calls: int, concurrency: int, samples: dict[tuple[str, str], list[Figures]], loop: str
) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        auth, health = auth_pb2_grpc.AuthServiceStub(channel), health_pb2_grpc.HealthStub(channel)
        ping = health_pb2.HealthCheckRequest()
        timed: dict[str, Call] = {"noop": lambda: health.Check(ping, timeout=10)}
        for name, request in server.authorize.items():
            answer = await auth.Authorize(request, timeout=10)  # warm, and allowed
            assert answer.decision.allowed, (loop, name, answer)
            timed[name] = lambda r=request: auth.Authorize(r, timeout=10)
        await rate(timed["noop"], max(calls // 5, 20), concurrency)  # warm the channel
        for name, call in timed.items():
            before = tree_cpu_seconds(server.pid)
            measured = await rate(call, calls, concurrency)
            cpu_us = (tree_cpu_seconds(server.pid) - before) / calls * 1e6
            samples[(name, loop)].append(Figures(measured, cpu_us))


def measure(
    servers: dict[str, Server], envoy_pid: int, args: argparse.Namespace
) -> dict[tuple[str, str], list[Figures]]:
    samples: dict[tuple[str, str], list[Figures]] = {
        (path, loop): [] for path in (*ENVOY_PATHS, *RPC_PATHS) for loop in LOOPS
    }
    for round_number in range(args.rounds):
        order = LOOPS if round_number % 2 == 0 else LOOPS[::-1]
        for kind in ENVOY_PATHS:
            for loop in order:
                run = sample(servers[loop].targets[kind], envoy_pid, args.duration, args.connections)
                assert run.server_us is not None
                samples[(kind, loop)].append(Figures(run.rate, run.server_us))
        for loop in order:
            asyncio.run(_rpc_figures(servers[loop], args.calls, args.concurrency, samples, loop))
    return samples


def _median(runs: list[Figures], field: Callable[[Figures], float]) -> float:
    return statistics.median(field(run) for run in runs)


def print_figures(samples: dict[tuple[str, str], list[Figures]], args: argparse.Namespace) -> None:
    print(
        f"Event loop of the Watchword server, asyncio against uvloop: wrk -t1 -c{args.connections} "
        f"-d{args.duration}s through Envoy, {args.calls} gRPC calls ({args.concurrency} in flight), "
        f"median of {args.rounds} round(s)"
    )
    print(
        f"{'path':<40} {'asyncio/s':>10} {'uvloop/s':>10} {'ratio':>6} "
        f"{'asyncio CPU µs':>15} {'uvloop CPU µs':>14} {'ratio':>6}"
    )
    for path, label in (ENVOY_PATHS | RPC_PATHS).items():
        rates = [_median(samples[(path, loop)], lambda run: run.rate) for loop in LOOPS]
        cpu = [_median(samples[(path, loop)], lambda run: run.cpu_us) for loop in LOOPS]
        print(
            f"{label:<40} {rates[0]:>10.0f} {rates[1]:>10.0f} {rates[1] / rates[0]:>6.2f} "
            f"{cpu[0]:>15.1f} {cpu[1]:>14.1f} {cpu[1] / cpu[0]:>6.2f}"
        )
    for name in ("authorize_c3", "authorize_c8"):
        ratios = [
            statistics.median(
                mine.rate / noop.rate
                for mine, noop in zip(samples[(name, loop)], samples[("noop", loop)], strict=True)
            )
            for loop in LOOPS
        ]
        label = f"{RPC_PATHS[name].split(',')[0]} / no-op"
        print(f"{label:<40} {ratios[0]:>10.2f} {ratios[1]:>10.2f} {ratios[1] / ratios[0]:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per path, loop and round")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--calls", type=int, default=2000, help="gRPC calls per path, loop and round")
    parser.add_argument("--concurrency", type=int, default=32, help="gRPC calls in flight")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the medians are printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, bench_setup(Path(scratch)) as (servers, pid):
        samples = measure(servers, pid, args)
    print_figures(samples, args)


if __name__ == "__main__":
    main()
