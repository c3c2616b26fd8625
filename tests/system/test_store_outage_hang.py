"""The database hangs under load (#8): every PostgreSQL process frozen (SIGSTOP), so connections stay
open and nothing is answered or refused. A hang is an outage like a refusal: warm credentials answer from
cache within the grace and in bounded time, everything else is UNAVAILABLE with a reason (never INTERNAL,
never a hang), the log stays small, and service returns at once when the database resumes (SIGCONT)."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from test_store_outage import _authorize, _serve_on, own_postgres  # noqa: F401 (a fixture)

from watchword import reasons, secret_format
from watchword.api import errors
from watchword.domain import CredentialKind
from watchword.v1 import admin_pb2, auth_pb2

from support.postgres import PostgresServer
from support.server import WatchwordProcess
from support.tenants import API_KEY, create_credential, make_tenant

GRACE_SECONDS = 4.0
FREEZE_SECONDS = 7.0
STORE_TIMEOUT_SECONDS = 0.5
# What a caller may wait during the hang: the store timeout, and the scheduling of a busy 2-core machine.
ANSWER_BOUND_SECONDS = STORE_TIMEOUT_SECONDS + 1.0
WORKERS = 6


@dataclass(frozen=True)
class Outcome:
    role: str
    started: float
    finished: float
    answer: str  # "allow", "deny:<reason>" or "<status code>:<ErrorInfo reason>"


def _answer(server: WatchwordProcess, request: auth_pb2.AuthorizeRequest) -> str:
    try:
        response = server.auth().Authorize(request, timeout=10)
    except grpc.RpcError as exc:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        reason = ""
        if status is not None and status.details:
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            reason = info.reason
        return f"{exc.code().name}:{reason}"
    if response.decision.allowed:
        return "allow"
    return f"deny:{response.refusal.reason or response.decision.reason}"


UNAVAILABLE = f"UNAVAILABLE:{errors.STORE_UNAVAILABLE}"


def test_s8_postgresql_frozen_under_load_is_an_outage_not_a_hang(
    own_postgres: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = _serve_on(own_postgres, tmp_path)
    env["WATCHWORD_STORE_OUTAGE_GRACE_SECONDS"] = str(GRACE_SECONDS)
    env["WATCHWORD_STORE_TIMEOUT_SECONDS"] = str(STORE_TIMEOUT_SECONDS)
    env["WATCHWORD_AUDIT_LOG_FILE"] = str(tmp_path / "audit.log")  # the output is the server log alone
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
        cold = _authorize(new_key("cold").secret, tenant.organization_id, tenant.application_id)
        unknown = secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())
        requests = [("warm", _authorize(t, tenant.organization_id, tenant.application_id)) for t in warm]
        requests.append(("unknown", _authorize(unknown, tenant.organization_id, tenant.application_id)))
        assert [_answer(server, r) for _, r in requests] == ["allow"] * 3 + [
            f"deny:{reasons.CREDENTIAL_UNKNOWN}"
        ]
        outcomes: list[Outcome] = []
        stop = threading.Event()

        def drive(worker: int) -> None:
            plan = itertools.islice(itertools.cycle(requests), worker, None)
            while not stop.is_set():
                role, request = next(plan)
                started = time.monotonic()
                answer = _answer(server, request)
                outcomes.append(Outcome(role, started, time.monotonic(), answer))
                time.sleep(0.005)

        logged_before = len(server.output)
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            drivers = [pool.submit(drive, n) for n in range(WORKERS)]
            time.sleep(1.0)
            frozen_at = time.monotonic()
            own_postgres.freeze()
            try:
                while time.monotonic() - frozen_at < FREEZE_SECONDS:
                    started = time.monotonic()
                    answer = _answer(server, cold)
                    outcomes.append(Outcome("cold", started, time.monotonic(), answer))
                    time.sleep(0.05)
            finally:
                thawed_at = time.monotonic()
                own_postgres.thaw()
            while _answer(server, cold) != "allow":
                assert time.monotonic() - thawed_at < 10, "no recovery after the store resumed"
                time.sleep(0.05)
            recovered_after = time.monotonic() - thawed_at
            time.sleep(1.0)
            stop.set()
            for driver in drivers:
                driver.result(timeout=30)
        log = "".join(server.output[logged_before:])

    print(f"recovered {recovered_after:.2f}s after PostgreSQL resumed; {len(log)} bytes logged:\n{log}")
    during = [o for o in outcomes if o.started >= frozen_at and o.finished <= thawed_at]
    assert len(during) > 50, "too little load during the hang to prove anything"
    allowed = {"warm": {"allow", UNAVAILABLE}, "cold": {UNAVAILABLE}}
    for outcome in during:
        expected = allowed.get(outcome.role, {UNAVAILABLE, f"deny:{reasons.CREDENTIAL_UNKNOWN}"})
        assert outcome.answer in expected, outcome
        # A hang is never passed on to the caller.
        assert outcome.finished - outcome.started < ANSWER_BOUND_SECONDS, outcome
    warm = [o for o in during if o.role == "warm"]
    # Within the grace, warm credentials are served from cache (loaded at most 1 s before the freeze).
    assert all(o.answer == "allow" for o in warm if o.started < frozen_at + GRACE_SECONDS - 1.2)
    # Past it, nothing is served from cache: UNAVAILABLE with its reason.
    late = [o for o in warm if o.started > frozen_at + GRACE_SECONDS + 0.1]
    assert late
    assert {o.answer for o in late} == {UNAVAILABLE}
    assert recovered_after < 1.0
    after = [o for o in outcomes if o.started > thawed_at + recovered_after]
    assert after
    assert {o.answer for o in after if o.role == "warm"} == {"allow"}
    assert "Traceback" not in log
    assert len(log) < 64 * 1024
