"""The server's own Python work per call, in microseconds: Authenticate and Authorize per credential kind
next to the no-op health check, without the network or gRPC's C core.

    .venv/bin/python bench/per_call.py [--calls 5000] [--batch 100] [--profile]

Creates one credential of each kind on a real `watchword serve` (bench/_cases.py), stops it, then starts
the same server in this process (`watchword.app.start`, same store and settings) and, per call, does
exactly the Python work gRPC's asyncio server does for a unary call: run the server's interceptors over
the method's handler (gRPC runs them for every call), decode the request bytes with the handler's
deserializer, await the handler, encode the response. Whatever interceptors `app.start` installs are
included, so the figures show their cost too. `extra µs` is a case's time per call minus the no-op's:
the budget the gRPC benchmarks' ratios come from. The cases take turns batch by batch and the fastest
batch of each is shown: other work on the machine only ever adds time. `--profile` prints where the
time goes (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

import grpc
from grpc_health.v1 import health_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cases import Case, bench_server, create_cases

from watchword import app, config

from support.jwks_server import JwksServer

BASELINE = "no-op baseline (Health/Check)"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# What a grpc-python client sends with every call.
METADATA = (("user-agent", "grpc-python-asyncio/1.85.1 grpc-c/50.0.0 (linux; chttp2)"),)


class _Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class _Context:
    """What the handlers of these RPCs read from their context."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return METADATA

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        """The observe interceptor hands back the request id (and gRPC stores it)."""

    def code(self) -> grpc.StatusCode | None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def time_remaining(self) -> float | None:
        return None  # no deadline, as the benchmark clients send


class InProcessServer:
    """The handlers and interceptors `app.start` registers, invoked the way gRPC's asyncio server does."""

    def __init__(self, interceptors: list[grpc.aio.ServerInterceptor], handlers: list[Any]) -> None:
        self._interceptors = tuple(interceptors)
        self._handlers = handlers
        self._context = _Context()

    def _query(self, details: _Details) -> grpc.RpcMethodHandler | None:
        for generic in self._handlers:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    async def _intercepted(self, index: int, details: _Details) -> grpc.RpcMethodHandler | None:
        if index == len(self._interceptors):
            return self._query(details)
        continuation = functools.partial(self._intercepted, index + 1)
        return await self._interceptors[index].intercept_service(continuation, details)

    async def call(self, method: str, request: bytes) -> bytes:
        handler = await self._intercepted(0, _Details(method, METADATA))
        assert handler is not None, method
        assert handler.unary_unary is not None, method
        message = handler.request_deserializer(request)
        response = await handler.unary_unary(message, self._context)
        return handler.response_serializer(response)


async def start_in_process(settings: config.Settings) -> tuple[app.RunningServer, InProcessServer]:
    """`app.start`, keeping hold of the interceptors and handlers it gives the gRPC server."""
    captured: dict[str, Any] = {"handlers": []}
    make_server = grpc.aio.server

    def recording_server(*args: Any, **kwargs: Any) -> grpc.aio.Server:
        server = make_server(*args, **kwargs)
        captured["interceptors"] = list(kwargs.get("interceptors") or ())
        add = server.add_generic_rpc_handlers

        def add_generic_rpc_handlers(handlers: Any) -> None:
            captured["handlers"].extend(handlers)
            add(handlers)

        server.add_generic_rpc_handlers = add_generic_rpc_handlers  # type: ignore[method-assign]
        return server

    with mock.patch.object(grpc.aio, "server", recording_server):
        running = await app.start(settings, out=io.StringIO())
    return running, InProcessServer(captured["interceptors"], captured["handlers"])


Invoke = Callable[[], Awaitable[bytes]]


async def _per_call_us(invoke: Invoke, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await invoke()
    return (time.perf_counter() - started) / calls * 1e6


async def _measure(
    server: InProcessServer, cases: dict[str, Case], calls: int, batch: int, profile: bool
) -> dict[str, list[tuple[str, float]]]:
    ping = health_pb2.HealthCheckRequest().SerializeToString()
    tables: dict[str, list[tuple[str, float]]] = {}
    profiler = cProfile.Profile() if profile else None
    for rpc in ("Authenticate", "Authorize"):
        invokes: dict[str, Invoke] = {BASELINE: functools.partial(server.call, HEALTH_CHECK, ping)}
        for name, case in cases.items():
            request = case.authenticate if rpc == "Authenticate" else case.authorize
            invokes[name] = functools.partial(
                server.call, f"/watchword.v1.AuthService/{rpc}", request.SerializeToString()
            )
        for invoke in invokes.values():  # warm every cache
            await _per_call_us(invoke, max(calls // 10, 10))
        samples: dict[str, list[float]] = {name: [] for name in invokes}
        names = list(invokes)
        if profiler is not None:
            profiler.enable()
        for batch_number in range(max(calls // batch, 1)):  # every case in turn, batch by batch
            shift = batch_number % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(await _per_call_us(invokes[name], batch))
        if profiler is not None:
            profiler.disable()
        tables[rpc] = [(name, min(values)) for name, values in samples.items()]
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(40)
    return tables


def print_per_call(title: str, rows: list[tuple[str, float]]) -> None:
    baseline = dict(rows)[BASELINE]
    print(title)
    print(f"{'case':<34} {'µs/call':>10} {'extra µs':>10}")
    for name, value in rows:
        print(f"{name:<34} {value:>10.1f} {value - baseline:>10.1f}")


async def _run(settings: config.Settings, cases: dict[str, Case], args: argparse.Namespace) -> dict[str, Any]:
    running, server = await start_in_process(settings)
    try:
        return await _measure(server, cases, args.calls, args.batch, args.profile)
    finally:
        await running.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000, help="calls per case")
    parser.add_argument("--batch", type=int, default=100, help="calls per timed batch; the fastest is shown")
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the timed calls to stderr"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, JwksServer(algorithms=("ES256",)) as idp:
        process = bench_server(Path(tmp), idp)
        with process:
            cases = create_cases(process, idp)
        environ = {
            "WATCHWORD_DATA_DIR": str(process.data_dir),
            "WATCHWORD_PORT": "0",
            "WATCHWORD_HTTP_ENABLED": "false",
        }
        settings = config.load(Path(tmp) / "watchword.toml", environ)
        tables = asyncio.run(_run(settings, cases, args))
    for rpc, rows in tables.items():
        print_per_call(
            f"{rpc}, server-side Python work per call, warm cache, fastest batch of {args.batch} "
            f"among {args.calls} calls per case",
            rows,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
