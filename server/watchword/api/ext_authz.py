"""E1: Envoy's external authorization, `envoy.service.auth.v3.Authorization/Check`.

Envoy sends each HTTP request's method, path and headers; the route table names the action and the
resource; the pipeline authenticates the credential exactly as for Authenticate (T1-T5) and decides.
Answers follow the shared HTTP format (README, "Envoy in front (E1)"):

- allowed: OK, with `x-watchword-*` headers for the upstream (client-sent ones removed or overwritten), and
  optionally the raw credential removed and a short-lived internal token added;
- refused credential: 401 with `WWW-Authenticate`; denied decision or no route: 403; JSON bodies;
- Watchword's own fault (store down, a bug): 503, never OK. Every failure is answered as a denied
  CheckResponse rather than a gRPC error, so Envoy's `failure_mode_allow` is never consulted.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from watchword import reasons
from watchword.domain import HttpParts, Principal, Refusal
from watchword.extract import TransportSettings, parse_cookie_header
from watchword.issue.internal_token import InternalTokens
from watchword.observe.decisions import Recorder
from watchword.pipeline import Pipeline
from watchword.routes import RouteTable
from watchword.store.database import is_store_outage

log = logging.getLogger("watchword.ext_authz")

SERVICE_NAME = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name
HEADER_PREFIX = "x-watchword-"
PRINCIPAL_ID = "x-watchword-principal-id"
ORGANIZATION_ID = "x-watchword-organization-id"
CREDENTIAL_KIND = "x-watchword-credential-kind"
CREDENTIAL_ID = "x-watchword-credential-id"
INTERNAL_TOKEN = "x-watchword-internal-token"
OWN_HEADERS = (PRINCIPAL_ID, ORGANIZATION_ID, CREDENTIAL_KIND, CREDENTIAL_ID, INTERNAL_TOKEN)
DEFAULT_CHALLENGE = 'Bearer realm="watchword"'
# Allow answers kept, one per verified principal (see ExtAuthzServicer._allowed).
MAX_PLAIN_ALLOWS = 10_000
# Header values Envoy forwards as they are: printable ASCII; anything else is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


@dataclass(frozen=True, slots=True)
class ExtAuthzSettings:
    remove_credential_headers: bool = False
    internal_tokens: InternalTokens | None = None


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE
    )


def _denied(
    status: int, code: int, body: dict[str, str], *headers: tuple[str, str]
) -> external_auth_pb2.CheckResponse:
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=body["reason"]),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status),
            headers=[_header("content-type", "application/json"), *(_header(n, v) for n, v in headers)],
            body=json.dumps(body, separators=(",", ":")),
        ),
    )


def unauthenticated(refusal: Refusal) -> external_auth_pb2.CheckResponse:
    body = {"error": "unauthenticated", "reason": refusal.reason, "message": refusal.message}
    challenge = refusal.www_authenticate or DEFAULT_CHALLENGE
    return _denied(401, code_pb2.UNAUTHENTICATED, body, ("www-authenticate", challenge))


def forbidden(reason: str, message: str) -> external_auth_pb2.CheckResponse:
    body = {"error": "forbidden", "reason": reason, "message": message}
    return _denied(403, code_pb2.PERMISSION_DENIED, body)


def unavailable(message: str) -> external_auth_pb2.CheckResponse:
    body = {"error": "unavailable", "reason": reasons.AUTHORIZATION_UNAVAILABLE, "message": message}
    return _denied(503, code_pb2.UNAVAILABLE, body)


def request_headers(http: attribute_context_pb2.AttributeContext.HttpRequest) -> list[tuple[str, str]]:
    """Envoy sends `headers` (a map, repeated headers joined) or, with `encode_raw_headers`, `header_map`."""
    raw = http.header_map.headers
    if raw:
        return [
            (h.key.lower(), h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value) for h in raw
        ]
    headers = http.headers
    # Keys, then lookups: iterating the map's items() goes through a slow Python view.
    return [(name.lower(), headers[name]) for name in headers]


class ExtAuthzServicer(external_auth_pb2_grpc.AuthorizationServicer):
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
        self._plain_allows: dict[int, tuple[Principal, external_auth_pb2.CheckResponse]] = {}

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        try:
            return await self._check(request.attributes.request.http)
        except Exception as exc:
            if is_store_outage(exc):
                log.warning("store unavailable during ext_authz Check", exc_info=True)
                return unavailable("the authorization store is unavailable; retry")
            incident = uuid.uuid4().hex[:16]
            log.exception("internal error in ext_authz Check (incident %s)", incident)
            return unavailable(f"internal error (incident {incident})")

    async def _check(
        self, http: attribute_context_pb2.AttributeContext.HttpRequest
    ) -> external_auth_pb2.CheckResponse:
        path, _, query = http.path.partition("?")
        query = query.partition("#")[0] or http.query
        match = self._routes.match(http.method, path.partition("#")[0])
        if match is None:
            self._recorder.authorized("", None, None, None, False, reasons.ROUTE_NOT_CONFIGURED, "S8")
            return forbidden(
                reasons.ROUTE_NOT_CONFIGURED,
                f"no route is configured for {http.method[:32]} requests to this path",
            )
        credential_headers, spoofed = self._scan(http)
        parts = HttpParts(method=http.method, path=path, headers=credential_headers, query=query)
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
        if not outcome.decision.allowed or outcome.principal is None:
            return forbidden(outcome.decision.reason, outcome.decision.message)
        return await self._allowed(outcome.principal, http, spoofed, query)

    def _scan(
        self, http: attribute_context_pb2.AttributeContext.HttpRequest
    ) -> tuple[tuple[tuple[str, str], ...], bool]:
        """One pass over the headers: those that may carry a credential (the others cannot matter to the
        extractor), and whether the client sent any `x-watchword-*` header of its own."""
        wanted = self._credential_headers
        found: list[tuple[str, str]] = []
        spoofed = False
        for name, value in request_headers(http):
            if name in wanted:
                found.append((name, value))
            elif name.startswith(HEADER_PREFIX):
                spoofed = True
        return tuple(found), spoofed

    async def _allowed(
        self,
        principal: Principal,
        http: attribute_context_pb2.AttributeContext.HttpRequest,
        spoofed: bool,
        query: str,
    ) -> external_auth_pb2.CheckResponse:
        plain = (
            self._settings.internal_tokens is None
            and not self._settings.remove_credential_headers
            and not spoofed
        )
        if not plain:
            return await self._build_allowed(principal, request_headers(http), query)
        # The usual request (nothing to strip, no spoofed header, no internal token): its answer depends on
        # the principal alone, so it is built once per verified Principal object (the identify caches keep
        # those, and a changed credential makes a new one). Entries hold their principal, so an id is
        # never reused while its entry lives. Bounded, oldest first.
        entry = self._plain_allows.get(id(principal))
        if entry is not None and entry[0] is principal:
            return entry[1]
        response = await self._build_allowed(principal, [], query)
        allows = self._plain_allows
        allows[id(principal)] = (principal, response)
        while len(allows) > MAX_PLAIN_ALLOWS:
            del allows[next(iter(allows))]
        return response

    async def _build_allowed(
        self, principal: Principal, headers: list[tuple[str, str]], query: str
    ) -> external_auth_pb2.CheckResponse:
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
        ok = external_auth_pb2.OkHttpResponse()
        if self._settings.remove_credential_headers:
            self._strip_credentials(ok, sent, headers, query, to_remove, to_set)
        ok.headers.extend(_header(name, value) for name, value in sorted(to_set.items()))
        ok.headers_to_remove.extend(sorted(to_remove))
        return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)

    def _strip_credentials(
        self,
        ok: external_auth_pb2.OkHttpResponse,
        sent: set[str],
        headers: list[tuple[str, str]],
        query: str,
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
        if self._transports.query_enabled and query:
            present = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
            ok.query_parameters_to_remove.extend(n for n in self._transports.query_parameters if n in present)
