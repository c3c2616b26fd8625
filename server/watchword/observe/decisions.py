"""Where the servicers report what they decided: counted for the metrics, written to the audit log.

Every audit record is built here or in `interceptor.py`, from ids, kinds, reason codes and rule ids
only. A credential, a header, a token or an outbound secret never reaches a record: the functions below
take the verified result (a Principal, a Decision, an issued token's id), not what the caller sent.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import secrets
import time
from typing import Any

from watchword import secret_format
from watchword.domain import CredentialKind, Principal, Refusal, Resource
from watchword.observe import call, spans, tracing
from watchword.observe.audit import KIND_LABELS, AuditLog, Record
from watchword.observe.metrics import Metrics

UNKNOWN_KIND = "unknown"
ALLOW, DENY, REFUSED, ERROR = "allow", "deny", "refused", "error"
# Who and what: plain fields, or a Principal / Resource the audit writer turns into fields (off the loop).
Who = Principal | dict[str, str]
# Shared by every Authenticate record (records are only read after they are queued).
_AUTHENTICATE = {"action": "authenticate"}
# Decision ids (ext_authz): a random prefix per process (workers are spawned, so each draws its own) and
# a counter, 24 hex digits, like request ids. Unique, not secret: one joins Envoy's access log line and
# the audit record; it proves nothing, and costs no system call per check.
_DECISION_PREFIX = secrets.token_hex(6)
_DECISIONS = itertools.count(1)


def new_decision_id() -> str:
    return f"{_DECISION_PREFIX}{next(_DECISIONS):012x}"


def claimed_credential_id(value: str) -> str:
    """The credential id a caller names, only when it has the shape of one (never a secret by mistake)."""
    return value if secret_format.is_credential_id(value) else ""


def basic_username(authorization: str) -> str:
    """The user part of `Basic base64(user:password)`, when it is a credential id; "" otherwise."""
    if not authorization.lower().startswith("basic "):
        return ""
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return claimed_credential_id(decoded.partition(":")[0])


def secret_owner(token: str) -> str:
    """The credential id a Watchword secret names in its prefix (not a secret itself), or ""."""
    parsed = secret_format.parse(token)
    return parsed.credential_id if parsed is not None else ""


def _with_detail(what: dict[str, Any], refusal: Refusal) -> dict[str, Any]:
    """The refusal's audit-only detail (fixed texts, never what the caller sent), when it has one."""
    return {**what, "detail": refusal.detail} if refusal.detail else what


class Recorder:
    """One per server; `metrics` and `audit` may each be off (None)."""

    def __init__(self, metrics: Metrics | None, audit: AuditLog | None) -> None:
        self._metrics = metrics
        self._audit = audit
        if tracing.enabled:  # decided once, when the server is built: off, a record costs what it did
            self._record = self._record_and_trace  # type: ignore[method-assign]

    def _record_and_trace(
        self,
        kind: str,
        result: str,
        reason: str,
        who: Who,
        what: dict[str, Any],
        rule: str = "",
        *,
        decided: bool = True,
        decision_id: str = "",
        dry_run: bool = False,
    ) -> None:
        """`_record`, and the answer on the request's span: the record's result, reason, rule, kind, action
        and decision id (never who nor on what: those are ids of principals and resources)."""
        options = {"decided": decided, "decision_id": decision_id, "dry_run": dry_run}
        Recorder._record(self, kind, result, reason, who, what, rule, **options)
        if decided:
            spans.recorded(kind, result, reason, what, rule, decision_id, dry_run)

    def _record(
        self,
        kind: str,
        result: str,
        reason: str,
        who: Who,
        what: dict[str, Any],
        rule: str = "",
        *,
        decided: bool = True,
        decision_id: str = "",
        dry_run: bool = False,
    ) -> None:
        """`decided`: counted among the decisions (a leak report is audited, not counted there)."""
        info = call.current.get()
        rpc = info.rpc if info is not None else ""
        if self._metrics is not None and decided:
            self._metrics.count_decision((rpc, kind, result, reason))
            if dry_run and result != ALLOW:
                self._metrics.count_dry_run_denial((rpc, reason))
        if self._audit is not None:
            record: Record = {
                "ts": time.time(),
                "request_id": info.request_id if info is not None else "",
                "rpc": rpc,
                "who": who,
                "what": what,
                "result": result,
                "reason": reason,
                "rule": rule,
                "peer": info.peer() if info is not None else "",
            }
            if decision_id:
                record["decision_id"] = decision_id
            if dry_run:
                record["dry_run"] = True
            self._audit.write(record)

    def authenticated(self, result: Principal | Refusal, decision_id: str = "") -> None:
        what = _AUTHENTICATE
        if isinstance(result, Principal):
            self._record(KIND_LABELS[result.kind], ALLOW, "allowed", result, what, decision_id=decision_id)
        else:
            what = _with_detail(what, result)
            self._record(UNKNOWN_KIND, REFUSED, result.reason, {}, what, decision_id=decision_id)

    def authorized(
        self,
        action: str,
        resource: Resource | None,
        principal: Principal | None,
        refusal: Refusal | None,
        allowed: bool,
        reason: str,
        rule: str,
        entry: int | None = None,
        decision_id: str = "",
        dry_run: bool = False,
    ) -> None:
        """`decision_id`: this decision's id (ext_authz, Authorize, each batch entry); `dry_run`: the
        answer was an allow instead (the record keeps the would-be result, a would-be denial counts as
        one)."""
        what: dict[str, Any] = {"action": action}
        if resource is not None:
            what["resource"] = resource
        if entry is not None:
            what["entry"] = entry
        who: Who = {}
        kind = UNKNOWN_KIND
        if principal is not None:
            kind, who = KIND_LABELS[principal.kind], principal
        if refusal is not None:
            # Not authenticated: the refusal's reason says why (the decision's is `not_authenticated`).
            what = _with_detail(what, refusal)
            self._record(
                kind, REFUSED, refusal.reason, who, what, rule, decision_id=decision_id, dry_run=dry_run
            )
        else:
            result = ALLOW if allowed else DENY
            self._record(kind, result, reason, who, what, rule, decision_id=decision_id, dry_run=dry_run)

    def issued(
        self,
        grant: str,
        kind: CredentialKind | None,
        claimed_id: str,
        token_id: str,
        error: str,
        fault: bool = False,
    ) -> None:
        """IssueToken: `kind` is the credential kind the grant takes, `claimed_id` the credential the
        request names (see the helpers above), `error` the OAuth error code of a refusal, or of a fault
        (`fault`: no decision was made, the result is `error`)."""
        who = {"credential_id": claimed_id} if claimed_id else {}
        what: dict[str, Any] = {"action": "issue_token", "grant": grant}
        if token_id:
            what["token_id"] = token_id
        label = KIND_LABELS[kind] if kind is not None else UNKNOWN_KIND
        result = ERROR if fault else DENY if error else ALLOW
        self._record(label, result, error or "issued", who, what)

    def signed(self, outbound_credential_id: str, caller: Principal | str, failure: str) -> None:
        """SignOutbound: `caller` is the admin token id or the caller's principal."""
        who: Who
        if isinstance(caller, Principal):
            kind, who = KIND_LABELS[caller.kind], caller
        else:
            kind, who = KIND_LABELS[CredentialKind.ADMIN_TOKEN], {"admin_token_id": caller}
        what = {"action": "sign_outbound", "outbound_credential_id": outbound_credential_id}
        self._record(kind, ERROR if failure else ALLOW, failure or "signed", who, what)

    def token_checked(
        self,
        action: str,
        caller: Principal | str,
        outcome: str,
        found: Principal | None = None,
        detail: str = "",
        refused: bool = False,
        fault: bool = False,
    ) -> None:
        """I7 introspection and revocation. `caller` is the authenticated OAuth client, or the client id
        its request claimed when it was refused ("": none); `outcome` the answer (`active`, `inactive`,
        `revoked`, `deactivated`, `not_found`) or the OAuth error code of a refusal (`refused`) or a
        fault (`fault`); `found` the token's principal when it was found (ids only, as every principal
        in a record, never the token); `detail` the reason code of why it was not, for the operator."""
        if isinstance(caller, Principal):
            who: Who = caller
        else:
            who = {"credential_id": caller} if caller else {}
        what: dict[str, Any] = {"action": action}
        if found is not None:
            what["token"] = found
        if detail:
            what["detail"] = detail
        result = ERROR if fault else DENY if refused else ALLOW
        self._record(KIND_LABELS[CredentialKind.OAUTH_CLIENT], result, outcome, who, what)

    def leak_reported(
        self, kind: CredentialKind | None, who: dict[str, str], outcome: str, what: dict[str, Any]
    ) -> None:
        """A token a secret scanner reported leaked, and what was done (`hygiene.secret_scanning`): the
        credential by its ids, the outcome (deactivated, flagged, false_positive...), never the token."""
        label = KIND_LABELS[kind] if kind is not None else UNKNOWN_KIND
        self._record(label, outcome, "leak_reported", who, {"action": "leak_report", **what}, decided=False)
