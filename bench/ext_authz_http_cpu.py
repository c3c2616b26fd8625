"""CPU per HTTP ext_authz check (E4), in process: Watchword's door against a trivial app on the same stack.

    .venv/bin/python bench/ext_authz_http_cpu.py [--checks 20000] [--rounds 3]

Both run behind the E4 listener's protocol (`ext_authz/http_server.py`) on one connection with a
stand-in transport, fed Envoy-like check requests (GET, Bearer C3 static token, x-request-id): so the
figures are the parsing and answering plus the check. Watchword runs as served by default: warm
caches, metrics on, the audit log on (written to a file by its thread; the process CPU time counted
includes that thread). The trivial check answers 200 to everything: the floor this stack costs. It prints
CPU microseconds per check for both (best of the rounds) and the difference, Watchword's own work.

Timings on a shared machine vary by half; instruction counts do not. `--only door|trivial` runs just
that app's checks (no output), for callgrind: the difference of two runs, with `--checks N` and
`--checks 0`, divided by N, is the instructions per check, e.g.

    valgrind --tool=callgrind .venv/bin/python bench/ext_authz_http_cpu.py --only door --checks 2000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from watchword import listeners
from watchword.api import new_credential
from watchword.api.overload import OverloadInterceptor
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.ext_authz.core import ExtAuthzCore, ExtAuthzSettings
from watchword.ext_authz.http import HttpFrontDoor
from watchword.ext_authz.http_server import Check, CheckConnection, CheckListener, Response
from watchword.extract import TransportSettings
from watchword.observe.audit import AuditLog
from watchword.observe.decisions import Recorder
from watchword.observe.metrics import Metrics
from watchword.pipeline import Pipeline
from watchword.routes import RouteSettings, RouteTable
from watchword.store import database
from watchword.store.repository import Store
from watchword.v1 import admin_pb2, common_pb2

ROUTE = {
    "method": "GET",
    "path": "/v1/organizations/{organization_id}/applications",
    "action": "application.list",
}


class _Transport(asyncio.Transport):
    """Collects what the protocol writes; `done` is set when an answer (one write) went out."""

    def __init__(self) -> None:
        super().__init__()
        self.head = b""
        self.done = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.head = bytes(data[:12])
        self.done.set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 9000), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...


async def trivial(method: str, target: bytes, headers: list[tuple[str, str]], peer: str) -> Response:
    return 200, [(b"content-length", b"0")], b""


async def _static_token(store: Store, catalogue: Catalogue, master: MasterKey) -> tuple[str, str]:
    organization = await store.create_organization("bench")
    request = admin_pb2.CreateCredentialRequest(
        kind=common_pb2.CREDENTIAL_KIND_STATIC_TOKEN,
        organization_id=organization.id,
        name="bench",
        permissions=["application.list"],
    )
    row, secret = new_credential.build(request, catalogue, master)
    await store.add_credential(row)
    return organization.id, secret


def _request(organization_id: str, secret: str) -> bytes:
    lines = [
        f"GET /v1/organizations/{organization_id}/applications HTTP/1.1",
        "host: api.example",
        f"authorization: Bearer {secret}",
        "x-request-id: 0b8c3f4e-5a1d-4c7e-9f2a-3d6b8e1c4a7f",
        "x-envoy-expected-rq-timeout-ms: 2000",
        "content-length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _protocol(check: Check) -> tuple[CheckConnection, _Transport]:
    listener = CheckListener(check, 1024, 60.0, listeners.ENVOY_MAX_HEADER_BYTES)
    protocol = CheckConnection(listener)
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _run(check: Check, request: bytes, checks: int, audit: AuditLog | None = None) -> float:
    """CPU microseconds per check over `checks` requests on one kept-alive connection (with the audit
    writer thread's work for them: the timer stops once it has written every record)."""
    protocol, transport = _protocol(check)
    before = audit.written if audit is not None else 0
    started = time.process_time()
    for _ in range(checks):
        transport.done.clear()
        protocol.data_received(request)
        await transport.done.wait()
    if checks and transport.head != b"HTTP/1.1 200":
        raise SystemExit(f"the check was not allowed: {transport.head!r}")
    while audit is not None and audit.written - before < checks:
        await asyncio.sleep(0.005)
    return 1e6 * (time.process_time() - started) / max(checks, 1)


async def main(checks: int, rounds: int, only: str) -> None:
    directory = Path(tempfile.mkdtemp())
    url = f"sqlite:///{directory / 'bench.db'}"
    await database.migrate_async(url)
    store, catalogue, master = Store.connect(url), Catalogue.load(None), MasterKey.from_text(generate(), "b")
    organization_id, secret = await _static_token(store, catalogue, master)
    routes = RouteTable.build([RouteSettings.model_validate(ROUTE)], catalogue)
    pipeline = Pipeline(store, catalogue, TransportSettings(), master, cache_ttl=3600.0)
    metrics, audit = Metrics(), AuditLog(directory / "audit.log")
    audit.start()
    core = ExtAuthzCore(pipeline, routes, TransportSettings(), ExtAuthzSettings(), Recorder(metrics, audit))
    door = HttpFrontDoor(core, "", OverloadInterceptor(256), metrics)
    request = _request(organization_id, secret)
    await _run(door, request, 200)  # warm the caches
    if only:
        await _run(door if only == "door" else trivial, request, checks, audit if only == "door" else None)
        audit.close()
        await store.close()
        return
    floor, own = [], []
    for _ in range(rounds):
        floor.append(await _run(trivial, request, checks))
        own.append(await _run(door, request, checks, audit))
    audit.close()
    await store.close()
    print(f"trivial check (the listener's floor):  {min(floor):6.1f} us CPU per check")
    print(f"watchword HTTP ext_authz (C3, audit on): {min(own):6.1f} us CPU per check")
    print(f"watchword's own work:                    {min(own) - min(floor):6.1f} us per check")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("door", "trivial"), default="", help="for callgrind")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.checks, arguments.rounds, arguments.only)))
