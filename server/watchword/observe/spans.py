"""What Watchword's spans carry: each attribute from a verified result, by kind, reason code and rule id.

Like the audit log (`decisions.py`), these read the outcome of a phase, never what the caller sent: no
credential, token, header value, credential id, key id or principal id ever becomes an attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from watchword.domain import Decision, PresentedCredential, Principal, Refusal
from watchword.observe.audit import KIND_LABELS
from watchword.observe.tracing import Attributes

if TYPE_CHECKING:
    from watchword.pipeline import AuthorizeOutcome

KIND = "watchword.credential.kind"
TRANSPORT = "watchword.credential.transport"
CACHE = "watchword.identify.cache"
ACTION = "watchword.action"
ROUTE = "watchword.route"
DECISION = "watchword.decision"
REASON = "watchword.reason"
RULE = "watchword.rule"
ALLOW, DENY, REFUSED = "allow", "deny", "refused"


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


def authenticated(result: Principal | Refusal, *_source: object) -> Attributes:
    """On the request's span: what Authenticate (or the first step of Authorize) found."""
    return identified(result)


def authorized(outcome: AuthorizeOutcome, _source: object = None, action: str = "", *_: object) -> Attributes:
    """On the request's span: the answer, as the audit record has it (a refusal by its own reason)."""
    if outcome.refusal is not None:
        refused = {DECISION: REFUSED, REASON: outcome.refusal.reason, RULE: outcome.decision.rule}
        return {**refused, ACTION: action}
    found = dict(decided(outcome.decision, None, action))
    if outcome.principal is not None:
        found[KIND] = KIND_LABELS[outcome.principal.kind]
    return found


def routed(method: str, template: str, action: str) -> Attributes:
    """On an ext_authz Check's span: the route the request matched (its template, never its path)."""
    return {ROUTE: f"{method} {template}", ACTION: action}
