"""What tracing costs per HTTP ext_authz check (E4), in process: off, on with nothing sampled, on with every
check exported.

    .venv/bin/python bench/tracing_overhead.py [--checks 20000] [--rounds 3]

The check is `ext_authz_http_cpu.py`'s (its E4 listener, stand-in transport, Envoy-like GET with a C3 static
token, warm caches, metrics and the audit log on), built three times:

- tracing off, as served by default: nothing is wrapped, the check runs the code it ran before tracing
  existed but for one module attribute read (`tracing.enabled`) in the decision core;
- tracing on, `OTEL_TRACES_SAMPLER=always_off`: every wrapper runs, the SDK records nothing;
- tracing on, every check sampled: the server span and its extract, identify and decide children, through
  the SDK's BatchSpanProcessor into its in-memory exporter (no network: the exporter's cost is not ours).

It prints CPU microseconds per check (best of the rounds, the batch processor's thread included) and each
case's ratio to tracing off. Compare with a build without the calls by running `ext_authz_http_cpu.py` of
the commit before tracing (docs/operations/tracing.md gives the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import ext_authz_http_cpu as cpu
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from watchword.api.overload import OverloadInterceptor
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.ext_authz.core import ExtAuthzCore, ExtAuthzSettings
from watchword.ext_authz.http import RPC, HttpFrontDoor
from watchword.ext_authz.http_server import Check
from watchword.extract import TransportSettings
from watchword.observe import tracing
from watchword.observe.audit import AuditLog
from watchword.observe.decisions import Recorder
from watchword.observe.metrics import Metrics
from watchword.pipeline import Pipeline
from watchword.routes import RouteSettings, RouteTable
from watchword.store import database
from watchword.store.repository import Store

CASES = ("tracing off", "on, sampler always_off", "on, every check exported")


def trace(case: str) -> InMemorySpanExporter | None:
    """Tracing as `case` has it, set before the pipeline is built (it wraps its phases only when on)."""
    tracing.shutdown()
    if case == CASES[0]:
        return None
    os.environ["OTEL_TRACES_SAMPLER"] = "always_off" if case == CASES[1] else "always_on"
    exporter = InMemorySpanExporter()
    tracing.use(TracerProvider(resource=tracing.resource()), BatchSpanProcessor(exporter))
    return exporter


def build(store: Store, catalogue: Catalogue, master: MasterKey, audit: AuditLog) -> Check:
    routes = RouteTable.build([RouteSettings.model_validate(cpu.ROUTE)], catalogue)
    pipeline = Pipeline(store, catalogue, TransportSettings(), master, cache_ttl=3600.0)
    metrics = Metrics()
    core = ExtAuthzCore(pipeline, routes, TransportSettings(), ExtAuthzSettings(), Recorder(metrics, audit))
    door = HttpFrontDoor(core, "", OverloadInterceptor(256), metrics)
    return tracing.traced_http_check(door, RPC) if tracing.enabled else door


async def main(checks: int, rounds: int) -> None:
    directory = Path(tempfile.mkdtemp())
    url = f"sqlite:///{directory / 'bench.db'}"
    await database.migrate_async(url)
    store, catalogue, master = Store.connect(url), Catalogue.load(None), MasterKey.from_text(generate(), "b")
    organization_id, secret = await cpu._static_token(store, catalogue, master)
    request = cpu._request(organization_id, secret)
    audit = AuditLog(directory / "audit.log")
    audit.start()
    best = dict.fromkeys(CASES, float("inf"))
    spans = 0
    for _ in range(rounds):
        for case in CASES:  # interleaved: a slower spell of the shared machine hits every case alike
            exporter = trace(case)
            door = build(store, catalogue, master, audit)
            await cpu._run(door, request, 200, audit)  # warm the caches
            best[case] = min(best[case], await cpu._run(door, request, checks, audit))
            tracing.shutdown()  # flushes (its export is outside the timed loop only for what was left)
            spans = len(exporter.get_finished_spans()) if exporter is not None and not spans else spans
    audit.close()
    await store.close()
    off = best[CASES[0]]
    print(f"tracing overhead, HTTP ext_authz check: {checks} checks per case, best of {rounds}")
    print(f"{'case':<34} {'us/check':>10} {'ratio':>8}")
    for case in CASES:
        print(f"{case:<34} {best[case]:>10.1f} {best[case] / off:>8.2f}")
    print(f"spans exported per sampled check: {spans / (checks + 200):.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.checks, arguments.rounds)))
