"""Soak: steady load with credential churn for minutes, and the slope of the replica's resident memory.

    .venv/bin/python bench/soak.py [--seconds 900] [--warmup 420] [--rate 300] [--unknown-every 10]

Opt-in (minutes, not part of the test suite; tests/test_benchmarks_soak_run.py runs it for seconds so it
cannot rot). Starts a real `watchword serve` on SQLite, creates a pool of API keys, then sends Authorize
calls on a fixed schedule (open loop) with a key of the pool, now and then an unknown key (the negative
caches), while a key is created and another deactivated every `--churn-seconds` (the invalidation path;
issue #12 found INTERNAL answers under exactly this). It samples the server's `VmRSS` and prints the
least-squares slope after the warm-up: caches fill during the warm-up and then stay at their bounds, so
a slope near zero says nothing grows without bound. Every answer that is an RPC error is counted by
status; INTERNAL should never appear.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from watchword import secret_format
from watchword.domain import CredentialKind
from watchword.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, common_pb2

from conftest import API_KEY, create_credential, make_tenant
from support.server import WatchwordProcess

POOL = 50


@dataclass
class Tally:
    allowed: int = 0
    denied: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MiB)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def request(secret: str, organization_id: str) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=secret)),
        action="application.list",
        resource=auth_pb2.Resource(organization_id=organization_id),
    )


class Soak:
    def __init__(
        self, server: WatchwordProcess, organization_id: str, pool: list[tuple[str, str]], unknown_every: int
    ) -> None:
        self.server = server
        self.unknown_every = unknown_every
        self.organization_id = organization_id
        self.pool = pool  # (credential id, secret) of the live keys
        self.tally = Tally()

    async def call(self, auth: auth_pb2_grpc.AuthServiceStub, index: int) -> None:
        if index % self.unknown_every == 0:
            secret = secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())
        else:
            secret = self.pool[index % len(self.pool)][1]
        try:
            answer = await auth.Authorize(request(secret, self.organization_id), timeout=10)
        except grpc.aio.AioRpcError as exc:
            self.tally.errors[exc.code().name] += 1
            return
        if answer.decision.allowed:
            self.tally.allowed += 1
        else:
            self.tally.denied[answer.refusal.reason or answer.decision.reason] += 1

    async def load(self, auth: auth_pb2_grpc.AuthServiceStub, rate: float, seconds: float) -> None:
        """Open loop: each call leaves when it is due, whether or not earlier ones have answered."""
        started, tasks = time.monotonic(), set()
        for index in itertools.count():
            due = started + index / rate
            if due - started >= seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.ensure_future(self.call(auth, index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    async def churn(self, admin: admin_pb2_grpc.AdminServiceStub, every: float, seconds: float) -> None:
        """A new key and a deactivation every `every` seconds: the pool keeps its size, caches churn."""
        metadata = self.server.admin_metadata
        deadline = time.monotonic() + seconds
        while time.monotonic() + every < deadline:
            await asyncio.sleep(every)
            created = await admin.CreateCredential(
                admin_pb2.CreateCredentialRequest(
                    kind=API_KEY,
                    organization_id=self.organization_id,
                    name="soak",
                    permissions=["application.list"],
                ),
                metadata=metadata,
                timeout=10,
            )
            self.pool.append((created.credential.id, created.secret))
            gone, _ = self.pool.pop(0)
            request = admin_pb2.DeactivateCredentialRequest(id=gone)
            await admin.DeactivateCredential(request, metadata=metadata, timeout=10)

    async def sample(self, pid: int, every: float, seconds: float) -> None:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            self.tally.samples.append((elapsed, rss_mib(pid)))
            await asyncio.sleep(every)
        self.tally.samples.append((time.monotonic() - started, rss_mib(pid)))

    async def run(self, pid: int, args: argparse.Namespace) -> None:
        async with grpc.aio.insecure_channel(self.server.address) as channel:
            auth, admin = auth_pb2_grpc.AuthServiceStub(channel), admin_pb2_grpc.AdminServiceStub(channel)
            await asyncio.gather(
                self.load(auth, args.rate, args.seconds),
                self.churn(admin, args.churn_seconds, args.seconds),
                self.sample(pid, args.sample_seconds, args.seconds),
            )


def slope_mib_per_minute(samples: list[tuple[float, float]], warmup: float) -> tuple[float, int]:
    after = [(t, mib) for t, mib in samples if t >= warmup]
    if len(after) < 2:
        return 0.0, len(after)
    fit = statistics.linear_regression([t for t, _ in after], [mib for _, mib in after])
    return fit.slope * 60, len(after)


def report(tally: Tally, args: argparse.Namespace) -> None:
    answered = tally.allowed + sum(tally.denied.values())
    print(
        f"Soak: {args.rate:g} Authorize calls/s for {args.seconds:g} s (warm-up {args.warmup:g} s), "
        f"{POOL} live keys and one unknown key in {args.unknown_every} calls, one key created and one "
        f"deactivated every {args.churn_seconds:g} s"
    )
    print(f"calls answered: {answered} (allowed {tally.allowed}, denied {sum(tally.denied.values())})")
    print(f"denials by reason: {dict(tally.denied.most_common())}")
    print(f"RPC errors by status: {dict(tally.errors.most_common())}")
    print(f"INTERNAL answers: {tally.errors.get('INTERNAL', 0)}")
    warm = [mib for t, mib in tally.samples if t >= args.warmup]
    first, end = tally.samples[0][1], tally.samples[-1][1]
    print(
        f"server RSS: {first:.1f} MiB at start, {warm[0] if warm else end:.1f} MiB after warm-up, "
        f"{end:.1f} MiB at the end"
    )
    slope, count = slope_mib_per_minute(tally.samples, args.warmup)
    print(f"RSS slope after warm-up: {slope:+.3f} MiB/min over {count} samples")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=900.0, help="length of the load")
    # Long enough for the caches to reach their bounds at the default rate (the unknown keys' misses
    # fill the credential cache's 10,000 entries in about 330 s).
    parser.add_argument("--warmup", type=float, default=420.0, help="seconds left out of the slope")
    parser.add_argument("--rate", type=float, default=300.0, help="Authorize calls per second")
    parser.add_argument("--churn-seconds", type=float, default=1.0, help="one key replaced this often")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="how often RSS is read")
    parser.add_argument(
        "--unknown-every", type=int, default=10, help="one call in this many carries an unknown key"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, WatchwordProcess(Path(tmp) / "data") as server:
        assert server.process is not None
        organization_id = make_tenant(server, "soak").organization_id
        pool = []
        for _ in range(POOL):
            created = create_credential(
                server,
                kind=API_KEY,
                organization_id=organization_id,
                name="soak",
                permissions=["application.list"],
            )
            pool.append((created.credential.id, created.secret))
        soak = Soak(server, organization_id, pool, args.unknown_every)
        asyncio.run(soak.run(server.process.pid, args))
    report(soak.tally, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
