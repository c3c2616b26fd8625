"""The database stops and restarts under load (#8): nothing that should be refused is ever allowed,
known credentials answer from cache for at most `store_outage_grace_seconds`, everything else is
UNAVAILABLE, and the service recovers by itself when PostgreSQL is back."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from watchword import reasons, secret_format
from watchword.domain import CredentialKind
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.postgres import PostgresServer
from support.server import WatchwordProcess
from support.shared_database import PRODUCTION, shared_database_settings
from support.tenants import API_KEY, create_credential, make_tenant

GRACE_SECONDS = 5.0
OUTAGE_SECONDS = 7.0
FRESHNESS_SECONDS = 1.0  # the credential cache's own ttl
RECOVERY_BOUND_SECONDS = 15.0
WORKERS = 6


@dataclass(frozen=True)
class Outcome:
    role: str  # "warm", "cold" (never seen before the outage), "deactivated", "unknown"
    started: float
    finished: float
    answer: str  # "allow", "deny:<reason>" or a gRPC status code name


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path / "pg") as server:
        yield server


def _serve_on(postgres: PostgresServer, tmp_path: Path) -> dict[str, str]:
    grace = {"WATCHWORD_STORE_OUTAGE_GRACE_SECONDS": str(GRACE_SECONDS)}
    return shared_database_settings(postgres, "watchword", tmp_path, **PRODUCTION, **grace)


def _authorize(token: str, organization_id: str, application_id: str) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token)),
        action="event_type.list",
        resource=auth_pb2.Resource(organization_id=organization_id, application_id=application_id),
    )


def _answer(server: WatchwordProcess, request: auth_pb2.AuthorizeRequest) -> str:
    try:
        response = server.auth().Authorize(request, timeout=10)
    except grpc.RpcError as exc:
        return exc.code().name
    if response.decision.allowed:
        return "allow"
    return f"deny:{response.refusal.reason or response.decision.reason}"


def test_postgresql_stopped_and_restarted_under_load(own_postgres: PostgresServer, tmp_path: Path) -> None:
    env = _serve_on(own_postgres, tmp_path)
    with WatchwordProcess(tmp_path / "unused", env=env) as server:
        tenant = make_tenant(server)

        def new_key(name: str) -> admin_pb2.CreateCredentialResponse:
            return create_credential(
                server,
                kind=API_KEY,
                organization_id=tenant.organization_id,
                name=name,
                permissions=["event_type.list"],
            )

        warm = [new_key(f"warm-{n}").secret for n in range(3)]
        cold = new_key("cold").secret  # valid, but never presented before the outage
        deactivated = new_key("deactivated")
        server.admin().DeactivateCredential(
            admin_pb2.DeactivateCredentialRequest(id=deactivated.credential.id),
            metadata=server.admin_metadata,
            timeout=10,
        )
        unknown = secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())
        requests = {
            "warm": [_authorize(t, tenant.organization_id, tenant.application_id) for t in warm],
            "deactivated": [_authorize(deactivated.secret, tenant.organization_id, tenant.application_id)],
            "unknown": [_authorize(unknown, tenant.organization_id, tenant.application_id)],
        }
        cold_request = _authorize(cold, tenant.organization_id, tenant.application_id)
        assert all(_answer(server, r) == "allow" for r in requests["warm"])
        assert _answer(server, requests["deactivated"][0]) == f"deny:{reasons.CREDENTIAL_DEACTIVATED}"
        assert _answer(server, requests["unknown"][0]) == f"deny:{reasons.CREDENTIAL_UNKNOWN}"

        outcomes: list[Outcome] = []
        stop = threading.Event()
        lock = threading.Lock()

        def drive(worker: int) -> None:
            plan = itertools.cycle([(role, r) for role, rs in requests.items() for r in rs])
            for _ in range(worker):
                next(plan)
            while not stop.is_set():
                role, request = next(plan)
                started = time.monotonic()
                answer = _answer(server, request)
                with lock:
                    outcomes.append(Outcome(role, started, time.monotonic(), answer))
                time.sleep(0.005)

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            drivers = [pool.submit(drive, n) for n in range(WORKERS)]
            time.sleep(1.0)
            stopping_at = time.monotonic()
            own_postgres.stop()
            down_at = time.monotonic()
            # A valid credential this replica has never seen needs the store: asked only now.
            while time.monotonic() - down_at < OUTAGE_SECONDS:
                started = time.monotonic()
                answer = _answer(server, cold_request)
                with lock:
                    outcomes.append(Outcome("cold", started, time.monotonic(), answer))
                time.sleep(0.05)
            restart_at = time.monotonic()
            own_postgres.start()
            up_at = time.monotonic()
            # Recovery: a credential that needs the store is served again, within a bounded time.
            while _answer(server, cold_request) != "allow":
                assert time.monotonic() - up_at < RECOVERY_BOUND_SECONDS, "no recovery after the restart"
                time.sleep(0.1)
            recovered_after = time.monotonic() - up_at
            time.sleep(1.0)
            stop.set()
            for driver in drivers:
                driver.result(timeout=30)

        print(f"recovered {recovered_after:.2f}s after PostgreSQL accepted connections again")
        # 1. What should be refused never is, whatever the phase.
        for outcome in outcomes:
            if outcome.role in ("deactivated", "unknown"):
                assert outcome.answer != "allow", outcome
        # 2. During the outage: warm credentials allowed from cache or UNAVAILABLE; the rest UNAVAILABLE or
        # the refusal they had (a cached refusal is still a refusal); never another error.
        during = [o for o in outcomes if o.started >= down_at and o.finished <= restart_at]
        assert len(during) > 50, "too little load during the outage to prove anything"
        for outcome in during:
            allowed = {"warm": {"allow", "UNAVAILABLE"}, "cold": {"UNAVAILABLE"}}.get(outcome.role)
            if allowed is None:
                allowed = {
                    "UNAVAILABLE",
                    f"deny:{reasons.CREDENTIAL_DEACTIVATED}",
                    f"deny:{reasons.CREDENTIAL_UNKNOWN}",
                }
            assert outcome.answer in allowed, outcome
        warm_during = [o for o in during if o.role == "warm"]
        # Past the cache's freshness, only the outage grace explains an allow: entries were last loaded
        # before the database went away (after `stopping_at`), so they are served stale until then + grace.
        stale_window = [
            o
            for o in warm_during
            if down_at + FRESHNESS_SECONDS + 0.1
            < o.started
            < stopping_at + GRACE_SECONDS - FRESHNESS_SECONDS - 0.1
        ]
        assert stale_window, "no load in the window where only stale entries can answer"
        assert all(o.answer == "allow" for o in stale_window), "warm credentials were not served from cache"
        # 3. The grace is a bound: past it, nothing is answered from cache any more.
        late = [o for o in warm_during if o.started > down_at + GRACE_SECONDS + 0.1]
        assert late, "the outage did not outlast the grace"
        assert all(o.answer == "UNAVAILABLE" for o in late), [o for o in late if o.answer != "UNAVAILABLE"]
        assert any(o.answer == "UNAVAILABLE" for o in during if o.role == "unknown")
        # 4. After recovery everything is answered as before the outage.
        settled = up_at + recovered_after
        after = [o for o in outcomes if o.started > settled]
        assert after, "no load after the recovery"
        expected = {
            "warm": "allow",
            "deactivated": f"deny:{reasons.CREDENTIAL_DEACTIVATED}",
            "unknown": f"deny:{reasons.CREDENTIAL_UNKNOWN}",
        }
        for outcome in after:
            assert outcome.answer == expected[outcome.role], outcome
