"""What Watchword's spans carry: each attribute from a verified result, by kind, reason code and rule id.

Like the audit log (`decisions.py`), these read the outcome of a phase, never what the caller sent: no
credential, token, header value, credential id, key id or principal id ever becomes an attribute.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from watchword.domain import Decision, PresentedCredential, Principal, Refusal
from watchword.observe import call
from watchword.observe.audit import KIND_LABELS
from watchword.observe.tracing import Attributes

KIND = "watchword.credential.kind"
TRANSPORT = "watchword.credential.transport"
CACHE = "watchword.identify.cache"
ACTION = "watchword.action"
ROUTE = "watchword.route"
DECISION = "watchword.decision"
REASON = "watchword.reason"
RULE = "watchword.rule"
DECISION_ID = "watchword.decision_id"
DRY_RUN = "watchword.dry_run"
ENTRY = "watchword.entry"
# A batch entry's answer: an event on the batch's span, one per entry (the span has no single answer).
ENTRY_EVENT = "watchword.entry_decision"
ALLOW, DENY, REFUSED, ERROR = "allow", "deny", "refused", "error"
UNKNOWN_KIND = "unknown"


def _transport(presented: PresentedCredential) -> str:
    return presented.transport.name.lower()


def extracted(result: PresentedCredential | Refusal, *_source: object) -> Attributes:
    if isinstance(result, Refusal):
        return {DECISION: REFUSED, REASON: result.reason}
    return {TRANSPORT: _transport(result)}


def identified(result: Principal | Refusal, *_presented: object) -> Attributes:
    if isinstance(result, Refusal):
        return {DECISION: REFUSED, REASON: result.reason}
    return {KIND: KIND_LABELS[result.kind], DECISION: ALLOW}


def cache_lookup(result: object, *_presented: object) -> Attributes:
    """A verified-credential cache asked first: a hit skips the signature or hash check."""
    return {CACHE: "miss" if result is None else "hit"}


def decided(decision: Decision, _principal: object = None, action: str = "", *_: object) -> Attributes:
    verdict = ALLOW if decision.allowed else DENY
    found = {DECISION: verdict, REASON: decision.reason, RULE: decision.rule}
    if action:
        found[ACTION] = action
    return found


def routed(method: str, template: str, action: str) -> Attributes:
    """On an ext_authz Check's span: the route the request matched (its template, never its path)."""
    return {ROUTE: f"{method} {template}", ACTION: action}


def recorded(
    kind: str,
    result: str,
    reason: str,
    what: dict[str, Any],
    rule: str,
    decision_id: str,
    dry_run: bool,
) -> None:
    """On the request's span: the answer its audit record has (`decisions.Recorder`), for every decision of
    every front door, also those made before the pipeline ran (no route, a broken Envoy route, a batch
    entry that does not parse). A batch entry's answer is an event of its own."""
    current = trace.get_current_span()
    if not current.is_recording():  # sampled out: nothing to build
        return
    found: dict[str, str | int | bool] = {DECISION: result, REASON: reason}
    if rule:
        found[RULE] = rule
    if kind != UNKNOWN_KIND:
        found[KIND] = kind
    if action := what.get("action"):
        found[ACTION] = action
    if decision_id:
        found[DECISION_ID] = decision_id
    if dry_run:
        found[DRY_RUN] = True
    entry = what.get("entry")
    if entry is None:
        current.set_attributes(found)
    else:
        current.add_event(ENTRY_EVENT, {**found, ENTRY: entry})


def rpc_failed(status_name: str) -> Attributes:
    """On a gRPC call's span when it ended in an error status (a malformed request, overload, a drain,
    the store down, an admin token refused): no decision was made, the ErrorInfo reason says why, as the
    audit record's does (the status's own name when the call had none)."""
    info = call.current.get()
    reason = info.error_reason if info is not None and info.error_reason else status_name.lower()
    return {DECISION: ERROR, REASON: reason}


def fault(reason: str) -> Attributes:
    """On an ext_authz check's span when Watchword could not decide (a 503: the store down, a fault,
    overload, a drain): no decision, no decision id, the reason of the 503's body."""
    return {DECISION: ERROR, REASON: reason}


def undecided(answer: Any, *_request: object) -> Attributes:
    """An ext_authz answer that is no decision (it has no decision id: a 503), as `fault`; a decision's
    own answer is on the span already, with its audit record."""
    return {} if answer.decision_id else fault(answer.reason)
