"""Decisions per second: the rule engine alone, and AuthorizeBatch through a real server, each next to a
no-op measured the same way in the same run.

    .venv/bin/python bench/decide.py [--decisions 200000] [--batch 500] [--batches 20] [--rounds 3]

(a) `decide()` over a prepared mix of principals of every kind, every catalogue action and three
resources (own, sibling, another organization), against a no-op Python function called with the same
arguments from the same loop: the ratio is what the rules cost over a bare call.
(b) A real `watchword serve` on a free loopback port: AuthorizeBatch calls of --batch entries that share
four credentials (application secret, API key, subject token, Watchword token), next to Authorize with
one entry per call, against the gRPC health check (`grpc.health.v1.Health/Check`, no work) at the same
concurrency. Batch rows count entries per second; the ratio is over no-op calls per second.

Every case runs once per round, in a rotated order, so drift on a shared machine favours none; the
median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Call, rate

from watchword.decide.catalogue import APPLICATION_LEVELS, Catalogue
from watchword.decide.rules import decide
from watchword.domain import CredentialKind, Principal, Resource, Subject, Transport
from watchword.v1 import admin_pb2, auth_pb2, auth_pb2_grpc, common_pb2

from support.server import WatchwordProcess
from support.tokens import watchword_token

NAME_WIDTH = 46
ENGINE_BASELINE = "no-op Python call, same arguments"
ENGINE_CASE = "decide(), every kind x action x resource"
RPC_BASELINE = "no-op RPC (Health/Check), calls/s"
SINGLE_CASE = "Authorize, 1 entry per call, entries/s"
BATCH_CASE = "AuthorizeBatch, entries/s"


# ---- (a) the rule engine alone ----


def _engine_mix(catalogue: Catalogue) -> list[tuple[Principal, str, Resource]]:
    """One principal per kind with concrete grants, every action, three resources: the table test's
    shape, so allows and every kind of denial are all in the mix."""

    def principal(kind: CredentialKind, **fields: Any) -> Principal:
        return Principal(id="p", kind=kind, transport=Transport.BEARER, **fields)

    principals = [
        principal(CredentialKind.EXTERNAL_JWT, memberships=(("org-a", ("editor",)),)),
        principal(
            CredentialKind.APPLICATION_SECRET,
            organization_id="org-a",
            application_id="app-a1",
            permissions=catalogue.actions_at(APPLICATION_LEVELS),
        ),
        principal(
            CredentialKind.STATIC_TOKEN,
            organization_id="org-a",
            permissions=frozenset({"application.get", "event.list", "object.publish"}),
            event_types_denied=("*.internal.*",),
        ),
        principal(
            CredentialKind.TENANT_JWT,
            organization_id="org-a",
            permissions=frozenset({"object.publish", "object.read"}),
            data_provider_patterns=("truck-*",),
        ),
        principal(
            CredentialKind.API_KEY,
            organization_id="org-a",
            permissions=frozenset({"event.send", "application.list", "event_type.list"}),
            event_types_allowed=("order.*",),
            event_types_denied=("order.internal.*",),
        ),
        principal(CredentialKind.CONNECTOR, organization_id="org-a", permissions=frozenset({"track"})),
        principal(
            CredentialKind.SUBJECT_JWT,
            organization_id="org-a",
            subject=Subject("user", "u-1"),
            permissions=frozenset({"track", "traits", "alias"}),
        ),
        principal(
            CredentialKind.WATCHWORD_TOKEN, organization_id="org-a", permissions=frozenset({"event.send"})
        ),
        principal(CredentialKind.OAUTH_CLIENT, organization_id="org-a"),
    ]
    resources = [
        Resource("org-a", "app-a1", "order.created", "truck-12", Subject("user", "u-1")),
        Resource("org-a", "app-a2", "order.internal.audit", "car-1", Subject("user", "u-2")),
        Resource("org-b", "app-b1", "order.created", "truck-12", Subject("user", "u-1")),
    ]
    return list(itertools.product(principals, sorted(catalogue.actions), resources))


def _noop(catalogue: Catalogue, principal: Principal, action_name: str, resource: Resource) -> None:
    return None


def _loop_rate(
    function: Callable[..., object], catalogue: Catalogue, work: list[tuple[Principal, str, Resource]]
) -> float:
    started = time.perf_counter()
    for principal, action, resource in work:
        function(catalogue, principal, action, resource)
    return len(work) / (time.perf_counter() - started)


def engine_rows(decisions: int, rounds: int) -> tuple[list[tuple[str, float]], float]:
    catalogue = Catalogue.load()
    mix = _engine_mix(catalogue)
    work = list(itertools.islice(itertools.cycle(mix), decisions))
    allowed = sum(decide(catalogue, *case).allowed for case in mix) / len(mix)
    cases: dict[str, Callable[..., object]] = {ENGINE_BASELINE: _noop, ENGINE_CASE: decide}
    _loop_rate(decide, catalogue, work[: max(len(work) // 10, 1)])  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_loop_rate(cases[name], catalogue, work))
    return [(name, statistics.median(values)) for name, values in samples.items()], allowed


# ---- (b) through a real server ----


def _bearer(token: str) -> common_pb2.CredentialSource:
    return common_pb2.CredentialSource(
        http=common_pb2.HttpRequest(
            headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")]
        )
    )


def _entries(server: WatchwordProcess, size: int) -> list[auth_pb2.AuthorizeRequest]:
    """`size` entries cycling over four credentials of one organization and requests on its resources."""
    admin, md = server.admin(), server.admin_metadata
    org = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="bench"), metadata=md).id
    app = admin.CreateApplication(
        admin_pb2.CreateApplicationRequest(organization_id=org, name="a"), metadata=md
    ).id

    def create(kind: int, **fields: object) -> admin_pb2.CreateCredentialResponse:
        request = admin_pb2.CreateCredentialRequest(kind=kind, organization_id=org, name="bench", **fields)
        return admin.CreateCredential(request, metadata=md)

    secret = create(common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET, application_id=app)
    key = create(
        common_pb2.CREDENTIAL_KIND_API_KEY,
        permissions=["event.send", "application.list"],
        event_types_allowed=["order.*"],
        event_types_denied=["order.internal.*"],
    )
    connector = create(common_pb2.CREDENTIAL_KIND_CONNECTOR, permissions=["track", "traits"])
    now = int(time.time())
    subject_token = jwt.encode(
        {"iss": connector.credential.id, "iat": now, "exp": now + 3600, "io.hull.asUser": {"id": "u-1"}},
        connector.secret.encode(),
        algorithm="HS256",
    )
    subject_source = common_pb2.CredentialSource(
        http=common_pb2.HttpRequest(
            headers=[
                common_pb2.KeyValue(name="Hull-App-Id", value=connector.credential.id),
                common_pb2.KeyValue(name="Hull-Access-Token", value=subject_token),
            ]
        )
    )
    own = _bearer(watchword_token(server.data_dir, org, scope="event.send", exp=now + 3600))
    user_1 = common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id="u-1")
    user_2 = common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id="u-2")
    templates = [
        (_bearer(secret.secret), "event_type.create", auth_pb2.Resource(application_id=app)),
        (_bearer(secret.secret), "application.create", auth_pb2.Resource(organization_id=org)),
        (
            _bearer(key.secret),
            "event.send",
            auth_pb2.Resource(application_id=app, event_type="order.created"),
        ),
        (
            _bearer(key.secret),
            "event.send",
            auth_pb2.Resource(application_id=app, event_type="order.internal.x"),
        ),
        (subject_source, "track", auth_pb2.Resource(organization_id=org, subject=user_1)),
        (subject_source, "traits", auth_pb2.Resource(organization_id=org, subject=user_2)),
        (own, "event.send", auth_pb2.Resource(application_id=app, event_type="order.created")),
        (own, "application.list", auth_pb2.Resource(organization_id=org)),
    ]
    return [
        auth_pb2.AuthorizeRequest(credential=source, action=action, resource=resource)
        for source, action, resource in itertools.islice(itertools.cycle(templates), size)
    ]


async def _server_run(
    address: str,
    entries: list[auth_pb2.AuthorizeRequest],
    batches: int,
    calls: int,
    concurrency: int,
    rounds: int,
) -> tuple[list[tuple[str, float]], float]:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        batch = auth_pb2.AuthorizeBatchRequest(entries=entries)
        # Warm the caches, and check every entry authenticates: we time decisions, not refusals.
        results = (await auth.AuthorizeBatch(batch, timeout=60)).results
        refused = [r.refusal.reason for r in results if r.HasField("refusal")]
        assert not refused, refused
        allowed = sum(r.decision.allowed for r in results) / len(results)
        singles = itertools.cycle(entries)
        ping = health_pb2.HealthCheckRequest()
        # name -> (the call, how many calls per round, entries per call)
        cases: dict[str, tuple[Call, int, int]] = {
            RPC_BASELINE: (lambda: health.Check(ping, timeout=10), calls, 1),
            SINGLE_CASE: (lambda: auth.Authorize(next(singles), timeout=10), calls, 1),
            BATCH_CASE: (lambda: auth.AuthorizeBatch(batch, timeout=60), batches, len(entries)),
        }
        await rate(cases[RPC_BASELINE][0], max(calls // 5, 10), concurrency)  # warm-up
        samples: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                call, count, per_call = cases[name]
                samples[name].append(await rate(call, count, concurrency) * per_call)
        return [(name, statistics.median(values)) for name, values in samples.items()], allowed


def server_rows(
    batch: int, batches: int, calls: int, concurrency: int, rounds: int
) -> tuple[list[tuple[str, float]], float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "watchword.toml"
        # Room for the batch size asked for; quiet logs, so logging is not what gets measured.
        config.write_text(f'log_level = "WARNING"\nmax_batch_entries = {max(batch, 1)}\n')
        with WatchwordProcess(Path(tmp) / "data", args=["--config", str(config)]) as server:
            entries = _entries(server, batch)
            return asyncio.run(_server_run(server.address, entries, batches, calls, concurrency, rounds))


def _print(title: str, rows: list[tuple[str, float]]) -> None:
    baseline = rows[0][1]
    print(title)
    print(f"{'case':<{NAME_WIDTH}} {'per second':>12} {'ratio to no-op':>15}")
    for name, per_second in rows:
        print(f"{name:<{NAME_WIDTH}} {per_second:>12.0f} {per_second / baseline:>15.4g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=200_000, help="rule-engine decisions per round")
    parser.add_argument("--batch", type=int, default=500, help="entries per AuthorizeBatch call")
    parser.add_argument("--batches", type=int, default=20, help="AuthorizeBatch calls per round")
    parser.add_argument("--calls", type=int, default=2000, help="no-op and single Authorize calls per round")
    parser.add_argument("--concurrency", type=int, default=4, help="RPCs in flight at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all cases; the median is shown")
    args = parser.parse_args(argv)
    engine, engine_allowed = engine_rows(args.decisions, args.rounds)
    rpc, rpc_allowed = server_rows(args.batch, args.batches, args.calls, args.concurrency, args.rounds)
    _print(
        f"Rule engine alone: {args.decisions} decisions per round ({engine_allowed:.0%} allowed), "
        f"median of {args.rounds} rounds",
        engine,
    )
    print()
    _print(
        f"Through a real server: {args.batches} batches of {args.batch} entries sharing 4 credentials "
        f"({rpc_allowed:.0%} allowed), {args.calls} single calls, {args.concurrency} in flight, "
        f"median of {args.rounds} rounds",
        rpc,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
