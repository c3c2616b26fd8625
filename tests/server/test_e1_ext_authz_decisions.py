"""E1/E4 in process: the decision core over a real pipeline on a real SQLite store, and both front doors'
encodings of its answers. Routes named by Envoy's context_extensions (and how they meet the route table),
decision ids (answers, dynamic metadata, audit records), dry-run per route and globally (what it allows,
what it never allows, what it records and counts)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from watchword import reasons
from watchword.api.ext_authz import check_response
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.ext_authz.core import (
    DECISION_ID,
    DRY_RUN,
    OWN_HEADERS,
    PRINCIPAL_ID,
    WOULD_BE_REASON,
    WOULD_BE_STATUS,
    Allowed,
    Answer,
    Denied,
    ExtAuthzCore,
    ExtAuthzSettings,
    WouldBe,
)
from watchword.ext_authz.http import HttpFrontDoor, encode
from watchword.extract import TransportSettings
from watchword.observe.audit import AuditLog
from watchword.observe.decisions import Recorder
from watchword.observe.metrics import Metrics
from watchword.pipeline import Pipeline
from watchword.routes import RouteSettings, RouteTable
from watchword.store.repository import Store

from support.api_keys import store_with_api_keys

MASTER = MasterKey.from_text(generate(), "test")
CATALOGUE = Catalogue.load(None)
LIST = {
    "method": "GET",
    "path": "/v1/organizations/{organization_id}/applications",
    "action": "application.list",
}
DRY = {"method": "GET", "path": "/v1/dry/{organization_id}", "action": "application.list", "dry_run": True}
ROUTES = [RouteSettings.model_validate(route) for route in (LIST, DRY)]
TRANSPORTS = TransportSettings(query_enabled=True)
# An Envoy route that names the action and resource itself.
NAMED = {"watchword.action": "application.list", "watchword.path": "/named/{organization_id}"}


@dataclass
class Core:
    store: Store
    metrics: Metrics
    audit: AuditLog
    audit_file: Path
    organization_id: str
    secret: str
    make: Callable[..., ExtAuthzCore]

    def records(self) -> list[dict[str, Any]]:
        self.audit.close()
        return [json.loads(line) for line in self.audit_file.read_text().splitlines()]


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    store, organization_id, secrets = await store_with_api_keys(tmp_path, MASTER, count=1)
    pipeline = Pipeline(store, CATALOGUE, TRANSPORTS, MASTER, cache_ttl=30.0)
    metrics, audit = Metrics(), AuditLog(tmp_path / "audit.log")
    audit.start()
    routes = RouteTable.build(ROUTES, CATALOGUE)

    def make(**settings: Any) -> ExtAuthzCore:
        return ExtAuthzCore(
            pipeline, routes, TRANSPORTS, ExtAuthzSettings(**settings), Recorder(metrics, audit)
        )

    yield Core(store, metrics, audit, tmp_path / "audit.log", organization_id, secrets[0], make)
    audit.close()
    await store.close()


def bearer(secret: str, **more: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {secret}"), *more.items()]


def headers_of(answer: Allowed) -> dict[str, str]:
    return dict(answer.headers)


def reason_of(answer: Answer) -> str:
    assert isinstance(answer, Denied), answer
    return answer.reason


# ---- context_extensions ----


async def test_e1_extensions_name_a_route_the_table_lacks(core: Core) -> None:
    checker = core.make()
    org = core.organization_id
    allowed = await checker.check("GET", f"/named/{org}", "", bearer(core.secret), extensions=NAMED)
    assert isinstance(allowed, Allowed)
    assert headers_of(allowed)[PRINCIPAL_ID]
    other = await checker.check("GET", "/named/another-org", "", bearer(core.secret), extensions=NAMED)
    assert reason_of(other) == reasons.RESOURCE_NOT_IN_SCOPE
    # Any method: the Envoy route chose the request.
    assert isinstance(
        await checker.check("DELETE", f"/named/{org}", "", bearer(core.secret), extensions=NAMED), Allowed
    )
    # Without watchword.* keys, the table decides as before (other keys are someone else's).
    unrouted = await checker.check(
        "GET", f"/named/{org}", "", bearer(core.secret), extensions={"tenant": "x"}
    )
    assert reason_of(unrouted) == reasons.ROUTE_NOT_CONFIGURED


@pytest.mark.parametrize(
    ("extensions", "reason"),
    [
        ({**NAMED, "watchword.action": "application.lsit"}, reasons.ACTION_UNKNOWN),
        ({**NAMED, "watchword.acton": "application.list"}, reasons.ROUTE_EXTENSIONS_INVALID),
        ({"watchword.path": "/named/{organization_id}"}, reasons.ROUTE_EXTENSIONS_INVALID),
        ({**NAMED, "watchword.path": "/named/{nothing}"}, reasons.ROUTE_EXTENSIONS_INVALID),
        ({**NAMED, "watchword.path": "/named"}, reasons.ROUTE_EXTENSIONS_INVALID),  # the org is needed
        ({**NAMED, "watchword.dry_run": "yes"}, reasons.ROUTE_EXTENSIONS_INVALID),
        ({**NAMED, "watchword.path": "/elsewhere/{organization_id}"}, reasons.ROUTE_NOT_CONFIGURED),
    ],
)
async def test_e1_bad_extensions_are_refused_before_the_credential_is_read(
    core: Core, extensions: dict[str, str], reason: str
) -> None:
    path = f"/named/{core.organization_id}"
    answer = await core.make().check("GET", path, "", bearer(core.secret), extensions=extensions)
    assert (answer.status, reason_of(answer)) == (403, reason)
    assert json.loads(answer.body)["message"]
    # Even in dry-run: a broken configuration never passes (a path that fits nothing is a would-be 403).
    dry = await core.make(dry_run=True).check("GET", path, "", bearer(core.secret), extensions=extensions)
    assert isinstance(dry, Allowed) == (reason == reasons.ROUTE_NOT_CONFIGURED)
    (record, dry_record) = [r for r in core.records() if r["what"]["action"] == ""]
    assert (record["result"], record["reason"], record["rule"]) == ("deny", reason, "S8")
    assert record["who"] == {}  # no credential was read
    assert record["decision_id"] != dry_record["decision_id"]


async def test_e1_table_and_extensions_must_agree_and_dry_run_needs_both(core: Core) -> None:
    checker = core.make()
    path = f"/v1/organizations/{core.organization_id}/applications"
    same = {
        "watchword.action": "application.list",
        "watchword.path": "/v1/organizations/{organization_id}/applications",
    }
    assert isinstance(await checker.check("GET", path, "", bearer(core.secret), extensions=same), Allowed)
    conflict = {**same, "watchword.action": "organization.get"}
    answer = await checker.check("GET", path, "", bearer(core.secret), extensions=conflict)
    assert reason_of(answer) == reasons.ROUTE_CONFLICT
    # The Envoy route asks for dry-run, the table does not: enforced.
    dry = await checker.check("GET", path, "", [], extensions={**same, "watchword.dry_run": "true"})
    assert reason_of(dry) == reasons.CREDENTIAL_MISSING
    # The table's dry-run route, which the Envoy route also marks: dry-run.
    dry_path = f"/v1/dry/{core.organization_id}"
    both = {
        "watchword.action": "application.list",
        "watchword.path": "/v1/dry/{organization_id}",
        "watchword.dry_run": "true",
    }
    assert isinstance(await checker.check("GET", dry_path, "", [], extensions=both), Allowed)
    only_table = {**both, "watchword.dry_run": "false"}
    assert (
        reason_of(await checker.check("GET", dry_path, "", [], extensions=only_table))
        == reasons.CREDENTIAL_MISSING
    )


# ---- decision ids ----


async def test_e1_every_decision_has_its_id_in_the_answer_the_metadata_and_the_audit_record(
    core: Core,
) -> None:
    checker = core.make()
    path = f"/v1/organizations/{core.organization_id}/applications"
    answers = [await checker.check("GET", path, "", bearer(core.secret)) for _ in range(3)]
    answers.append(await checker.check("GET", path, "", []))
    answers.append(await checker.check("GET", "/nowhere", "", bearer(core.secret)))
    ids = [answer.decision_id for answer in answers]
    assert len(set(ids)) == 5
    assert all(len(i) == 24 for i in ids)
    # gRPC: dynamic metadata and the header (to the upstream on allow, to the client on deny).
    for answer in answers:
        response = check_response(answer)
        assert response.dynamic_metadata.fields[DECISION_ID].string_value == answer.decision_id
        http = response.ok_response if isinstance(answer, Allowed) else response.denied_response
        assert {(h.header.key, h.header.value) for h in http.headers} >= {(DECISION_ID, answer.decision_id)}
    # HTTP: the header on every answer.
    for answer in answers:
        _status, headers, _body = encode(answer, b"rid")
        assert (DECISION_ID.encode(), answer.decision_id.encode()) in headers
    # The plain allows share one encoding, each with its own id.
    assert answers[0].rendered is answers[1].rendered
    assert check_response(answers[0]).ok_response.headers != check_response(answers[1]).ok_response.headers
    records = core.records()
    assert [r["decision_id"] for r in records] == ids
    assert [r["result"] for r in records] == ["allow", "allow", "allow", "refused", "deny"]
    assert all("dry_run" not in r for r in records)


async def test_e1_a_spoofed_decision_id_is_overwritten_not_removed(core: Core) -> None:
    path = f"/v1/organizations/{core.organization_id}/applications"
    answer = await core.make().check("GET", path, "", bearer(core.secret, **{DECISION_ID: "forged"}))
    assert isinstance(answer, Allowed)
    assert DECISION_ID not in answer.remove  # Envoy would apply the removal after setting it
    sent = check_response(answer).ok_response.headers
    assert [h.header.value for h in sent if h.header.key == DECISION_ID] == [answer.decision_id]


# ---- dry-run ----


async def test_e1_dry_run_route_allows_a_would_be_refusal_with_the_would_be_answer(core: Core) -> None:
    checker = core.make(remove_credential_headers=True)
    wrong_org = await checker.check(
        "GET", "/v1/dry/another-org", "", bearer(core.secret, **{PRINCIPAL_ID: "admin"})
    )
    assert isinstance(wrong_org, Allowed)
    assert wrong_org.would_be == WouldBe(403, reasons.RESOURCE_NOT_IN_SCOPE)
    assert headers_of(wrong_org) == {
        DRY_RUN: "true",
        WOULD_BE_STATUS: "403",
        WOULD_BE_REASON: reasons.RESOURCE_NOT_IN_SCOPE,
    }
    # Nobody was allowed: every principal header is removed (spoofed or not), and so is the credential.
    assert set(OWN_HEADERS) - {DRY_RUN, WOULD_BE_STATUS, WOULD_BE_REASON} <= set(wrong_org.remove)
    assert "authorization" in wrong_org.remove
    metadata = check_response(wrong_org).dynamic_metadata.fields
    assert {key: metadata[key].string_value for key in (DRY_RUN, WOULD_BE_STATUS, WOULD_BE_REASON)} == {
        DRY_RUN: "true",
        WOULD_BE_STATUS: "403",
        WOULD_BE_REASON: reasons.RESOURCE_NOT_IN_SCOPE,
    }
    missing = await checker.check("GET", f"/v1/dry/{core.organization_id}", "", [])
    assert isinstance(missing, Allowed)
    assert missing.would_be == WouldBe(401, reasons.CREDENTIAL_MISSING)
    allowed = await checker.check("GET", f"/v1/dry/{core.organization_id}", "", bearer(core.secret))
    assert isinstance(allowed, Allowed)
    assert allowed.would_be == WouldBe(200, reasons.ALLOWED)
    assert headers_of(allowed)[PRINCIPAL_ID]
    assert headers_of(allowed)[WOULD_BE_STATUS] == "200"
    # The same route outside dry-run still denies: the table's other route is enforced.
    enforced = await checker.check(
        "GET", "/v1/organizations/another-org/applications", "", bearer(core.secret)
    )
    assert reason_of(enforced) == reasons.RESOURCE_NOT_IN_SCOPE
    records = core.records()
    assert [(r["result"], r.get("dry_run", False)) for r in records] == [
        ("deny", True),
        ("refused", True),
        ("allow", True),
        ("deny", False),
    ]
    assert core.metrics.dry_run_denials == {
        ("", reasons.RESOURCE_NOT_IN_SCOPE): 1,
        ("", reasons.CREDENTIAL_MISSING): 1,
    }


async def test_e1_dry_run_plain_allows_are_shared_per_principal_apart_from_enforced_ones(core: Core) -> None:
    checker = core.make()
    dry_path, path = (
        f"/v1/dry/{core.organization_id}",
        f"/v1/organizations/{core.organization_id}/applications",
    )
    first, second = [await checker.check("GET", dry_path, "", bearer(core.secret)) for _ in range(2)]
    enforced = await checker.check("GET", path, "", bearer(core.secret))
    assert isinstance(first, Allowed)
    assert isinstance(second, Allowed)
    assert isinstance(enforced, Allowed)
    assert first.rendered is second.rendered
    assert first.rendered is not enforced.rendered
    assert DRY_RUN in headers_of(first)
    assert DRY_RUN in enforced.remove
    # gRPC: the shared part carries the would-be answer, each decision its own id.
    for answer in (first, second):
        metadata = check_response(answer).dynamic_metadata.fields
        assert metadata[DECISION_ID].string_value == answer.decision_id
        assert (metadata[DRY_RUN].string_value, metadata[WOULD_BE_STATUS].string_value) == ("true", "200")
    assert DRY_RUN not in check_response(enforced).dynamic_metadata.fields


def test_e1_an_allow_with_an_id_of_another_length_is_encoded_all_the_same() -> None:
    for decision_id in ("short", "0123456789abcdef0123456789"):
        response = check_response(Allowed((("x-watchword-principal-id", "p"),), (), decision_id=decision_id))
        assert response.dynamic_metadata.fields[DECISION_ID].string_value == decision_id
        headers = {h.header.key: h.header.value for h in response.ok_response.headers}
        assert headers == {"x-watchword-principal-id": "p", DECISION_ID: decision_id}


async def test_e1_global_dry_run_passes_unrouted_requests_but_never_secrets_or_faults(core: Core) -> None:
    checker = core.make(dry_run=True, remove_credential_headers=True)
    unrouted = await checker.check("GET", "/nowhere", "", bearer(core.secret))
    assert isinstance(unrouted, Allowed)
    assert unrouted.would_be == WouldBe(403, reasons.ROUTE_NOT_CONFIGURED)
    # A query credential the HTTP door cannot remove: refused, dry-run or not.
    path = f"/v1/organizations/{core.organization_id}/applications"
    query = f"secret={core.secret}"
    unremovable = await checker.check("GET", path, query, [], query_removable=False)
    assert reason_of(unremovable) == reasons.QUERY_CREDENTIAL_NOT_REMOVABLE
    # A check without the HTTP door's path prefix: refused.
    door = HttpFrontDoor(checker, "/ext_authz")
    status, _headers, body = await door("GET", path.encode(), [], "127.0.0.1:1")
    assert (status, json.loads(body)["reason"]) == (403, reasons.PATH_PREFIX_MISSING)
    # A fault is a 503, never an allow.
    async with core.store.engine.begin() as connection:
        await connection.execute(text("DROP TABLE credentials"))
    fault = await core.make(dry_run=True).check("GET", path, "", bearer(core.secret))
    assert (fault.status, reason_of(fault)) == (503, reasons.AUTHORIZATION_UNAVAILABLE)
