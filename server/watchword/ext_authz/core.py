"""The transport-neutral part of Envoy's ext_authz (E1, E4): from an HTTP request's method, path, query and
headers to an answer, Allowed or Denied, that each front door encodes its own way.

The route table names the action and the resource; the pipeline authenticates the credential exactly as
for Authenticate (T1-T5) and decides. Answers follow the shared HTTP format (README, "Envoy in front"):

- allowed: `x-watchword-*` headers for the upstream (client-sent ones removed or overwritten), and
  optionally the raw credential removed and a short-lived internal token added;
- refused credential: 401 with `WWW-Authenticate`; denied decision or no route: 403; JSON bodies;
- Watchword's own fault (store down, a bug): 503, never an allow.

Every decision has an id (`x-watchword-decision-id`), returned with the answer and written in its audit
record, so Envoy's access log and the audit log can be joined. The route comes from the route table or,
in gRPC mode, from the `watchword.*` context_extensions of Envoy's route (routes.py); when both name one
for a request they must agree (`route_conflict` otherwise). Dry-run (a route's `dry_run`, or the setting
`ext_authz_dry_run`) decides, records and counts as usual, then allows with the would-be answer in
`x-watchword-dry-run`, `-would-be-status` and `-would-be-reason`; never for faults, overload, or the
refusals that keep a secret from the upstream or a broken configuration from passing (NEVER_DRY_RUN).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from watchword import reasons
from watchword.domain import HttpParts, Principal, Refusal
from watchword.extract import TransportSettings, parse_cookie_header
from watchword.identify import xfcc
from watchword.issue.internal_token import InternalTokens
from watchword.observe import spans, tracing
from watchword.observe.decisions import Recorder, new_decision_id
from watchword.pipeline import AuthorizeOutcome, Pipeline
from watchword.routes import ANY_METHOD, Match, RouteTable, UnknownActionError
from watchword.store.database import is_store_outage

log = logging.getLogger("watchword.ext_authz")

HEADER_PREFIX = "x-watchword-"
PRINCIPAL_ID = "x-watchword-principal-id"
ORGANIZATION_ID = "x-watchword-organization-id"
CREDENTIAL_KIND = "x-watchword-credential-kind"
CREDENTIAL_ID = "x-watchword-credential-id"
INTERNAL_TOKEN = "x-watchword-internal-token"
# Set on every answer (allow or deny) by the front doors; never in an allow's `remove`.
DECISION_ID = "x-watchword-decision-id"
# Dry-run: the answer Watchword would have given, on the allow it gives instead.
DRY_RUN = "x-watchword-dry-run"
WOULD_BE_STATUS = "x-watchword-would-be-status"
WOULD_BE_REASON = "x-watchword-would-be-reason"
OWN_HEADERS = (
    PRINCIPAL_ID,
    ORGANIZATION_ID,
    CREDENTIAL_KIND,
    CREDENTIAL_ID,
    INTERNAL_TOKEN,
    DRY_RUN,
    WOULD_BE_STATUS,
    WOULD_BE_REASON,
)
# Refusals dry-run never turns into an allow: a secret the upstream must not see, a check that did not
# come through Envoy's filter as configured, an Envoy route whose extensions are broken or contradict the
# route table. (Faults and overload are 503s, never decisions: never dry-run either.)
NEVER_DRY_RUN = frozenset(
    {
        reasons.QUERY_CREDENTIAL_NOT_REMOVABLE,
        reasons.PATH_PREFIX_MISSING,
        reasons.ACTION_UNKNOWN,
        reasons.ROUTE_EXTENSIONS_INVALID,
        reasons.ROUTE_CONFLICT,
    }
)
DEFAULT_CHALLENGE = 'Bearer realm="watchword"'
# Allow answers kept, one per verified principal (see ExtAuthzCore._allowed).
MAX_PLAIN_ALLOWS = 10_000
# Header values Envoy forwards as they are: printable ASCII; anything else is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


@dataclass(frozen=True, slots=True)
class ExtAuthzSettings:
    remove_credential_headers: bool = False
    internal_tokens: InternalTokens | None = None
    dry_run: bool = False  # every decision (ext_authz_dry_run); routes may set their own


@dataclass(frozen=True, slots=True)
class WouldBe:
    """Dry-run: the answer Watchword would have given, 200 `allowed` or the refusal's status and reason."""

    status: int
    reason: str


@dataclass(slots=True)
class Allowed:
    """Forward the request: set `headers` (overwriting), remove `remove` and the query parameters
    `remove_query`. `rendered` keeps each front door's encoding of these (plain allows share theirs per
    principal, so it is made once); `decision_id` is this decision's, added by the front door.
    `would_be`: dry-run, the answer this allow stands in for. Never changed once made (not frozen only
    because a frozen dataclass costs a microsecond more to make, once per check)."""

    headers: tuple[tuple[str, str], ...]
    remove: tuple[str, ...]
    remove_query: tuple[str, ...] = ()
    rendered: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    decision_id: str = field(default="", compare=False)
    would_be: WouldBe | None = None


@dataclass(frozen=True, slots=True)
class Denied:
    """Answer the request: `status`, a JSON body with its `reason`, and extra `headers`."""

    status: int
    reason: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()
    decision_id: str = field(default="", compare=False)


Answer = Allowed | Denied


def _denied(status: int, body: dict[str, str], decision_id: str = "", *headers: tuple[str, str]) -> Denied:
    return Denied(status, body["reason"], json.dumps(body, separators=(",", ":")), headers, decision_id)


def unauthenticated(refusal: Refusal, decision_id: str = "") -> Denied:
    body = {"error": "unauthenticated", "reason": refusal.reason, "message": refusal.message}
    challenge = ("www-authenticate", refusal.www_authenticate or DEFAULT_CHALLENGE)
    return _denied(401, body, decision_id, challenge)


def forbidden(reason: str, message: str, decision_id: str = "") -> Denied:
    return _denied(403, {"error": "forbidden", "reason": reason, "message": message}, decision_id)


def unavailable(message: str, reason: str = reasons.AUTHORIZATION_UNAVAILABLE) -> Denied:
    return _denied(503, {"error": "unavailable", "reason": reason, "message": message})


class ExtAuthzCore:
    """One per server, shared by the gRPC and the HTTP front door (and so are its caches)."""

    def __init__(
        self,
        pipeline: Pipeline,
        routes: RouteTable,
        transports: TransportSettings,
        settings: ExtAuthzSettings,
        recorder: Recorder | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._recorder = recorder or Recorder(None, None)
        self._routes = routes
        self._transports = transports
        self._settings = settings
        # Only the headers that may carry a credential go to the extractor (the others cannot matter).
        names = {"authorization", *(name.lower() for name in transports.header_pair)}
        if transports.cookie_name:
            names.add("cookie")
        if transports.xfcc_trusted:  # C10: never read (nor trusted) unless the operator says so
            names.add(xfcc.HEADER)
        self._credential_headers = frozenset(names)
        self._plain_allows: dict[int, tuple[Principal, Allowed]] = {}
        self._plain_dry_run_allows: dict[int, tuple[Principal, Allowed]] = {}

    @property
    def reads_client_certificates(self) -> bool:
        """C10: whether a front door should pass the downstream's client certificate (Envoy's source)."""
        return self._transports.client_certificates

    @property
    def strips_query_credentials(self) -> bool:
        """Whether an allow must remove T5 query parameters (a front door that cannot must refuse)."""
        return self._settings.remove_credential_headers and self._transports.query_enabled

    async def check(
        self,
        method: str,
        path: str,
        query: str,
        headers: Sequence[tuple[str, str]],
        query_removable: bool = True,
        client_certificate: str = "",
        extensions: Mapping[str, str] | None = None,
    ) -> Answer:
        """`path` without its query, `headers` with lower-case names. `query_removable`: whether the front
        door can remove query parameters; if not, a query credential that must be removed is refused.
        `client_certificate`: C10, the downstream connection's certificate (PEM) or identity.
        `extensions`: Envoy's context_extensions (gRPC mode), which may name the route themselves."""
        try:
            return await self._check(
                method, path, query, headers, query_removable, client_certificate, extensions
            )
        except Exception as exc:
            if is_store_outage(exc):
                log.warning("store unavailable during ext_authz Check", exc_info=True)
                return unavailable("the authorization store is unavailable; retry")
            incident = uuid.uuid4().hex[:16]
            log.exception("internal error in ext_authz Check (incident %s)", incident)
            return unavailable(f"internal error (incident {incident})")

    async def _check(
        self,
        method: str,
        path: str,
        query: str,
        headers: Sequence[tuple[str, str]],
        query_removable: bool,
        client_certificate: str,
        extensions: Mapping[str, str] | None,
    ) -> Answer:
        decision_id = new_decision_id()
        routed = path.partition("#")[0]
        if extensions:
            match = self._named_route(method, routed, extensions)
        else:
            match = self._routes.match(method, routed)
        if not isinstance(match, Match):
            reason, message = match or (
                reasons.ROUTE_NOT_CONFIGURED,
                f"no route is configured for {method[:32]} requests to this path",
            )
            return await self._refused(reason, message, "S8", decision_id, headers, query)
        if tracing.enabled:
            tracing.annotate(spans.routed(match.route.method, match.route.template, match.route.action))
        if not query_removable and self._query_credential(query):
            return self._unremovable(match, decision_id)
        credential_headers, spoofed = self._scan(headers)
        parts = HttpParts(method, path, credential_headers, query, client_certificate=client_certificate)
        outcome = await self._pipeline.authorize(parts, match.route.action, match.resource)
        return await self._answer(match, outcome, headers, spoofed, query, decision_id)

    async def _answer(
        self,
        match: Match,
        outcome: AuthorizeOutcome,
        headers: Sequence[tuple[str, str]],
        spoofed: bool,
        query: str,
        decision_id: str,
    ) -> Answer:
        """The decision recorded and turned into the answer: in dry-run, always an allow."""
        decision = outcome.decision
        dry_run = self._settings.dry_run or match.route.dry_run
        self._recorder.authorized(
            match.route.action,
            match.resource,
            outcome.principal,
            outcome.refusal,
            decision.allowed,
            decision.reason,
            decision.rule,
            decision_id=decision_id,
            dry_run=dry_run,
        )
        if outcome.refusal is not None:
            denied = unauthenticated(outcome.refusal, decision_id)
        elif not decision.allowed or outcome.principal is None:
            denied = forbidden(decision.reason, decision.message, decision_id)
        else:
            would_be = WouldBe(200, decision.reason) if dry_run else None
            return await self._allowed(outcome.principal, headers, spoofed, query, decision_id, would_be)
        return await self._would_be(denied, headers, query) if dry_run else denied

    def _named_route(
        self, method: str, path: str, extensions: Mapping[str, str]
    ) -> Match | tuple[str, str] | None:
        """The route of a request whose Envoy route has context_extensions, or the refusal's (reason,
        message), or None (no route at all). The route the `watchword.*` extensions name, if any; when
        the route table has one for the request too, both must name the same action and resource, and
        dry-run needs both (enforcement wins)."""
        listed = self._routes.match(method, path)
        named = self._routes.for_extensions(extensions)
        if named is None:
            return listed
        if isinstance(named, UnknownActionError):
            return reasons.ACTION_UNKNOWN, str(named)
        if isinstance(named, Exception):
            return reasons.ROUTE_EXTENSIONS_INVALID, str(named)
        match = named.match(ANY_METHOD, path)
        if match is None:
            return reasons.ROUTE_NOT_CONFIGURED, "the path does not fit watchword.path of its Envoy route"
        if listed is None:
            return match
        if (listed.route.action, listed.resource) != (match.route.action, match.resource):
            return reasons.ROUTE_CONFLICT, (
                f"the Envoy route names action {match.route.action!r}, the route table "
                f"{listed.route.action!r} (or another resource) for this request"
            )
        # The same route twice: dry-run only if both say so.
        return match if listed.route.dry_run else listed

    async def _refused(
        self,
        reason: str,
        message: str,
        rule: str,
        decision_id: str,
        headers: Sequence[tuple[str, str]] = (),
        query: str = "",
    ) -> Answer:
        """A 403 decided before any credential is read; dry-run (the setting: no route was found) lets
        it pass unless it is one of NEVER_DRY_RUN."""
        dry_run = self._settings.dry_run and reason not in NEVER_DRY_RUN
        self._recorder.authorized(
            "", None, None, None, False, reason, rule, decision_id=decision_id, dry_run=dry_run
        )
        denied = forbidden(reason, message, decision_id)
        return await self._would_be(denied, headers, query) if dry_run else denied

    async def refuse(self, reason: str, message: str, rule: str = "E4") -> Answer:
        """A 403 decided by a front door before routing (e.g. a path without the configured prefix)."""
        return await self._refused(reason, message, rule, new_decision_id())

    async def _would_be(self, denied: Denied, headers: Sequence[tuple[str, str]], query: str) -> Allowed:
        """Dry-run: allow, telling the upstream (and Envoy) what the answer would have been. No principal
        headers nor internal token (nobody was allowed); spoofed x-watchword-* headers and, when the
        settings say so, the credential are removed as on any allow."""
        would_be = WouldBe(denied.status, denied.reason)
        return await self._build_allowed(None, headers, query, denied.decision_id, would_be)

    def _query_credential(self, query: str) -> bool:
        """A T5 credential parameter in the query, while the settings say it must never reach upstream."""
        if not query or not self.strips_query_credentials:
            return False
        names = self._transports.query_parameters
        return any(name in names for name, _ in parse_qsl(query, keep_blank_values=True))

    def _unremovable(self, match: Match, decision_id: str) -> Denied:
        reason = reasons.QUERY_CREDENTIAL_NOT_REMOVABLE
        self._recorder.authorized(
            match.route.action, match.resource, None, None, False, reason, "E4", decision_id=decision_id
        )
        return forbidden(
            reason,
            "this front door cannot remove query-parameter credentials from the request it forwards: send "
            "the credential in a header",
            decision_id,
        )

    def _scan(self, headers: Sequence[tuple[str, str]]) -> tuple[tuple[tuple[str, str], ...], bool]:
        """One pass over the headers: those that may carry a credential (the others cannot matter to the
        extractor), and whether the client sent any `x-watchword-*` header of its own."""
        wanted = self._credential_headers
        found: list[tuple[str, str]] = []
        spoofed = False
        for name, value in headers:
            if name in wanted:
                found.append((name, value))
            elif name.startswith(HEADER_PREFIX):
                spoofed = True
        return tuple(found), spoofed

    async def _allowed(
        self,
        principal: Principal,
        headers: Sequence[tuple[str, str]],
        spoofed: bool,
        query: str,
        decision_id: str,
        would_be: WouldBe | None,
    ) -> Allowed:
        plain = (
            self._settings.internal_tokens is None
            and not self._settings.remove_credential_headers
            and not spoofed
        )
        if not plain:
            return await self._build_allowed(principal, headers, query, decision_id, would_be)
        # The usual request (nothing to strip, no spoofed header, no internal token): its answer depends on
        # the principal alone (and on dry-run), so it is built once per verified Principal object (the
        # identify caches keep those, and a changed credential makes a new one) and shared, with its
        # encodings, by this principal's allows, each with its own decision id. Entries hold their
        # principal, so an id is never reused while its entry lives. Bounded, oldest first.
        allows = self._plain_allows if would_be is None else self._plain_dry_run_allows
        entry = allows.get(id(principal))
        if entry is not None and entry[0] is principal:
            shared = entry[1]
        else:
            shared = await self._build_allowed(principal, (), query, "", would_be)
            allows[id(principal)] = (principal, shared)
            while len(allows) > MAX_PLAIN_ALLOWS:
                del allows[next(iter(allows))]
        return Allowed(
            shared.headers, shared.remove, shared.remove_query, shared.rendered, decision_id, would_be
        )

    async def _build_allowed(
        self,
        principal: Principal | None,
        headers: Sequence[tuple[str, str]],
        query: str,
        decision_id: str,
        would_be: WouldBe | None,
    ) -> Allowed:
        """The allow for `principal`, or (dry-run of a refusal: None) for nobody."""
        values = {} if principal is None else await self._principal_headers(principal)
        if would_be is not None:
            values.update(
                {DRY_RUN: "true", WOULD_BE_STATUS: str(would_be.status), WOULD_BE_REASON: would_be.reason}
            )
        to_set = {name: quote(value, safe=_HEADER_SAFE) for name, value in values.items() if value}
        sent = {name for name, _ in headers}
        # Spoofing: a client-sent x-watchword-* header that is not overwritten below (the decision id
        # always is) is removed, and so is every header Watchword may set but does not here (e.g. an
        # organization id the principal lacks), also when Envoy did not send it to us (an
        # `allowed_headers` list on the filter).
        to_remove = {
            name
            for name in sent
            if name.startswith(HEADER_PREFIX) and name not in to_set and name != DECISION_ID
        }
        to_remove.update(name for name in OWN_HEADERS if name not in to_set)
        remove_query: tuple[str, ...] = ()
        if self._settings.remove_credential_headers:
            self._strip_credentials(sent, headers, to_remove, to_set)
            remove_query = self._query_to_remove(query)
        return Allowed(
            tuple(sorted(to_set.items())),
            tuple(sorted(to_remove)),
            remove_query,
            decision_id=decision_id,
            would_be=would_be,
        )

    async def _principal_headers(self, principal: Principal) -> dict[str, str]:
        values = {
            PRINCIPAL_ID: principal.id,
            ORGANIZATION_ID: principal.organization_id,
            CREDENTIAL_KIND: principal.kind.name.lower(),
            CREDENTIAL_ID: principal.credential_id,
        }
        if self._settings.internal_tokens is not None:
            values[INTERNAL_TOKEN] = await self._settings.internal_tokens.for_principal(principal)
        return values

    def _strip_credentials(
        self,
        sent: set[str],
        headers: Sequence[tuple[str, str]],
        to_remove: set[str],
        to_set: dict[str, str],
    ) -> None:
        """The upstream sees the principal headers, never the secret that proved them."""
        for name in ("authorization", *(n.lower() for n in self._transports.header_pair)):
            if name in sent:
                to_remove.add(name)
        cookie_name = self._transports.cookie_name
        if cookie_name and "cookie" in sent:
            kept = [
                f"{name}={value}"
                for header, raw in headers
                if header == "cookie"
                for name, value in parse_cookie_header(raw)
                if name != cookie_name
            ]
            if kept:
                to_set["cookie"] = "; ".join(kept)
            else:
                to_remove.add("cookie")

    def _query_to_remove(self, query: str) -> tuple[str, ...]:
        if not (self._transports.query_enabled and query):
            return ()
        present = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
        return tuple(n for n in self._transports.query_parameters if n in present)
