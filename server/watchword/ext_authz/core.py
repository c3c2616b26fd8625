"""The transport-neutral part of Envoy's ext_authz (E1, E4): from an HTTP request's method, path, query and
headers to an answer, Allowed or Denied, that each front door encodes its own way.

The route table names the action and the resource; the pipeline authenticates the credential exactly as
for Authenticate (T1-T5) and decides. Answers follow the shared HTTP format (README, "Envoy in front"):

- allowed: `x-watchword-*` headers for the upstream (client-sent ones removed or overwritten), and
  optionally the raw credential removed and a short-lived internal token added;
- refused credential: 401 with `WWW-Authenticate`; denied decision or no route: 403; JSON bodies;
- Watchword's own fault (store down, a bug): 503, never an allow.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from watchword import reasons
from watchword.domain import HttpParts, Principal, Refusal
from watchword.extract import TransportSettings, parse_cookie_header
from watchword.issue.internal_token import InternalTokens
from watchword.observe import spans, tracing
from watchword.observe.decisions import Recorder
from watchword.pipeline import Pipeline
from watchword.routes import Match, RouteTable
from watchword.store.database import is_store_outage

log = logging.getLogger("watchword.ext_authz")

HEADER_PREFIX = "x-watchword-"
PRINCIPAL_ID = "x-watchword-principal-id"
ORGANIZATION_ID = "x-watchword-organization-id"
CREDENTIAL_KIND = "x-watchword-credential-kind"
CREDENTIAL_ID = "x-watchword-credential-id"
INTERNAL_TOKEN = "x-watchword-internal-token"
OWN_HEADERS = (PRINCIPAL_ID, ORGANIZATION_ID, CREDENTIAL_KIND, CREDENTIAL_ID, INTERNAL_TOKEN)
DEFAULT_CHALLENGE = 'Bearer realm="watchword"'
# Allow answers kept, one per verified principal (see ExtAuthzCore._allowed).
MAX_PLAIN_ALLOWS = 10_000
# Header values Envoy forwards as they are: printable ASCII; anything else is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


@dataclass(frozen=True, slots=True)
class ExtAuthzSettings:
    remove_credential_headers: bool = False
    internal_tokens: InternalTokens | None = None


@dataclass(frozen=True, slots=True)
class Allowed:
    """Forward the request: set `headers` (overwriting), remove `remove` and the query parameters
    `remove_query`. `rendered` keeps each front door's encoding of this very answer (plain allows are
    reused per principal, so their encoding is made once)."""

    headers: tuple[tuple[str, str], ...]
    remove: tuple[str, ...]
    remove_query: tuple[str, ...] = ()
    rendered: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Denied:
    """Answer the request: `status`, a JSON body with its `reason`, and extra `headers`."""

    status: int
    reason: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()


Answer = Allowed | Denied


def _denied(status: int, body: dict[str, str], *headers: tuple[str, str]) -> Denied:
    return Denied(status, body["reason"], json.dumps(body, separators=(",", ":")), headers)


def unauthenticated(refusal: Refusal) -> Denied:
    body = {"error": "unauthenticated", "reason": refusal.reason, "message": refusal.message}
    return _denied(401, body, ("www-authenticate", refusal.www_authenticate or DEFAULT_CHALLENGE))


def forbidden(reason: str, message: str) -> Denied:
    return _denied(403, {"error": "forbidden", "reason": reason, "message": message})


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
        self._credential_headers = frozenset(names)
        self._plain_allows: dict[int, tuple[Principal, Allowed]] = {}

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
    ) -> Answer:
        """`path` without its query, `headers` with lower-case names. `query_removable`: whether the front
        door can remove query parameters; if not, a query credential that must be removed is refused."""
        try:
            return await self._check(method, path, query, headers, query_removable)
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
    ) -> Answer:
        match = self._routes.match(method, path.partition("#")[0])
        if match is None:
            self._recorder.authorized("", None, None, None, False, reasons.ROUTE_NOT_CONFIGURED, "S8")
            return forbidden(
                reasons.ROUTE_NOT_CONFIGURED,
                f"no route is configured for {method[:32]} requests to this path",
            )
        if tracing.enabled:
            tracing.annotate(spans.routed(match.route.method, match.route.template, match.route.action))
        if not query_removable and self._query_credential(query):
            return self._unremovable(match)
        credential_headers, spoofed = self._scan(headers)
        parts = HttpParts(method=method, path=path, headers=credential_headers, query=query)
        outcome = await self._pipeline.authorize(parts, match.route.action, match.resource)
        decision = outcome.decision
        self._recorder.authorized(
            match.route.action,
            match.resource,
            outcome.principal,
            outcome.refusal,
            decision.allowed,
            decision.reason,
            decision.rule,
        )
        if outcome.refusal is not None:
            return unauthenticated(outcome.refusal)
        if not decision.allowed or outcome.principal is None:
            return forbidden(decision.reason, decision.message)
        return await self._allowed(outcome.principal, headers, spoofed, query)

    def refuse(self, reason: str, message: str, rule: str = "E4") -> Denied:
        """A 403 decided by a front door before routing (e.g. a path without the configured prefix)."""
        self._recorder.authorized("", None, None, None, False, reason, rule)
        return forbidden(reason, message)

    def _query_credential(self, query: str) -> bool:
        """A T5 credential parameter in the query, while the settings say it must never reach upstream."""
        if not query or not self.strips_query_credentials:
            return False
        names = self._transports.query_parameters
        return any(name in names for name, _ in parse_qsl(query, keep_blank_values=True))

    def _unremovable(self, match: Match) -> Denied:
        reason = reasons.QUERY_CREDENTIAL_NOT_REMOVABLE
        self._recorder.authorized(match.route.action, match.resource, None, None, False, reason, "E4")
        return forbidden(
            reason,
            "this front door cannot remove query-parameter credentials from the request it forwards: send "
            "the credential in a header",
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
        self, principal: Principal, headers: Sequence[tuple[str, str]], spoofed: bool, query: str
    ) -> Allowed:
        plain = (
            self._settings.internal_tokens is None
            and not self._settings.remove_credential_headers
            and not spoofed
        )
        if not plain:
            return await self._build_allowed(principal, headers, query)
        # The usual request (nothing to strip, no spoofed header, no internal token): its answer depends on
        # the principal alone, so it is built once per verified Principal object (the identify caches keep
        # those, and a changed credential makes a new one). Entries hold their principal, so an id is
        # never reused while its entry lives. Bounded, oldest first.
        entry = self._plain_allows.get(id(principal))
        if entry is not None and entry[0] is principal:
            return entry[1]
        answer = await self._build_allowed(principal, (), query)
        allows = self._plain_allows
        allows[id(principal)] = (principal, answer)
        while len(allows) > MAX_PLAIN_ALLOWS:
            del allows[next(iter(allows))]
        return answer

    async def _build_allowed(
        self, principal: Principal, headers: Sequence[tuple[str, str]], query: str
    ) -> Allowed:
        values = {
            PRINCIPAL_ID: principal.id,
            ORGANIZATION_ID: principal.organization_id,
            CREDENTIAL_KIND: principal.kind.name.lower(),
            CREDENTIAL_ID: principal.credential_id,
        }
        if self._settings.internal_tokens is not None:
            values[INTERNAL_TOKEN] = await self._settings.internal_tokens.for_principal(principal)
        to_set = {name: quote(value, safe=_HEADER_SAFE) for name, value in values.items() if value}
        sent = {name for name, _ in headers}
        # Spoofing: a client-sent x-watchword-* header that is not overwritten below is removed, and so is
        # every header Watchword may set but does not here (e.g. an organization id the principal lacks),
        # also when Envoy did not send it to us (an `allowed_headers` list on the filter).
        to_remove = {name for name in sent if name.startswith(HEADER_PREFIX) and name not in to_set}
        to_remove.update(name for name in OWN_HEADERS if name not in to_set)
        remove_query: tuple[str, ...] = ()
        if self._settings.remove_credential_headers:
            self._strip_credentials(sent, headers, to_remove, to_set)
            remove_query = self._query_to_remove(query)
        return Allowed(tuple(sorted(to_set.items())), tuple(sorted(to_remove)), remove_query)

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
