"""E1: Envoy's external authorization over gRPC, `envoy.service.auth.v3.Authorization/Check`.

A thin adapter: the CheckRequest's method, path, query, headers and context_extensions (which may name
the route: routes.py) go to the decision core (`watchword.ext_authz.core`), whose Allowed or Denied answer
becomes a CheckResponse. Every failure is answered as a denied CheckResponse rather than a gRPC error, so
Envoy's `failure_mode_allow` is never consulted.

Each answer carries its decision id as the header `x-watchword-decision-id` (to the upstream on an allow,
to the client on a denial) and in `dynamic_metadata`, which Envoy files under the filter's namespace
(`envoy.filters.http.ext_authz`) for the access log: `x-watchword-decision-id` and, in dry-run,
`x-watchword-dry-run`, `x-watchword-would-be-status` and `x-watchword-would-be-reason`. The keys are the
header names, as HTTP mode's `dynamic_metadata_from_headers` makes them: one access-log format for both.
"""

from __future__ import annotations

import logging
import uuid
from urllib.parse import unquote

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from watchword.ext_authz.core import (
    DECISION_ID,
    DRY_RUN,
    WOULD_BE_REASON,
    WOULD_BE_STATUS,
    Allowed,
    Answer,
    Denied,
    ExtAuthzCore,
    WouldBe,
    unavailable,
)
from watchword.observe import spans, tracing

log = logging.getLogger("watchword.ext_authz")

SERVICE_NAME = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_CODES = {401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED, 503: code_pb2.UNAVAILABLE}
_JSON = ("content-type", "application/json")
# Where an Allowed answer keeps its CheckResponse (see Allowed.rendered).
_RENDERED = "grpc"


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE
    )


def _metadata(
    response: external_auth_pb2.CheckResponse, decision_id: str = "", would_be: WouldBe | None = None
) -> None:
    fields = response.dynamic_metadata.fields
    if decision_id:
        fields[DECISION_ID].string_value = decision_id
    if would_be is not None:
        fields[DRY_RUN].string_value = "true"
        fields[WOULD_BE_STATUS].string_value = str(would_be.status)
        fields[WOULD_BE_REASON].string_value = would_be.reason


def denied_response(denied: Denied) -> external_auth_pb2.CheckResponse:
    headers = [_header(*_JSON), *(_header(n, v) for n, v in denied.headers)]
    if denied.decision_id:
        headers.append(_header(DECISION_ID, denied.decision_id))
    response = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(
            code=_CODES.get(denied.status, code_pb2.PERMISSION_DENIED), message=denied.reason
        ),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=denied.status), headers=headers, body=denied.body
        ),
    )
    _metadata(response, denied.decision_id)
    return response


def _decision_part(decision_id: str) -> external_auth_pb2.CheckResponse:
    """What a decision adds to an allow: its id as a header for the upstream and as dynamic metadata."""
    response = external_auth_pb2.CheckResponse(
        ok_response=external_auth_pb2.OkHttpResponse(headers=[_header(DECISION_ID, decision_id)])
    )
    _metadata(response, decision_id)
    return response


# Protobuf merges concatenated messages (repeated fields appended, map entries added), so an allow is its
# shared part, serialized once, followed by its decision's part. Decision ids have one length (24 hex
# digits), so that part is serialized once too and the id written over a placeholder: building the
# message per check through the protobuf API cost about 10 µs, this about 2.
_ID_PLACEHOLDER = b"0" * 24
_DECISION_PART = _decision_part(_ID_PLACEHOLDER.decode()).SerializeToString()


def _decision_bytes(decision_id: str) -> bytes:
    if len(decision_id) == len(_ID_PLACEHOLDER):
        return _DECISION_PART.replace(_ID_PLACEHOLDER, decision_id.encode("ascii"))
    return _decision_part(decision_id).SerializeToString()  # never for Watchword's own ids


def ok_response(allowed: Allowed) -> external_auth_pb2.CheckResponse:
    """The allow's shared part (its headers, and in dry-run its would-be answer), serialized once per plain
    allow, with this decision's id."""
    rendered = allowed.rendered.get(_RENDERED)
    if rendered is None:
        ok = external_auth_pb2.OkHttpResponse(
            headers=[_header(name, value) for name, value in allowed.headers],
            headers_to_remove=allowed.remove,
            query_parameters_to_remove=allowed.remove_query,
        )
        shared = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)
        _metadata(shared, would_be=allowed.would_be)
        rendered = allowed.rendered[_RENDERED] = shared.SerializeToString()
    if allowed.decision_id:
        rendered += _decision_bytes(allowed.decision_id)
    return external_auth_pb2.CheckResponse.FromString(rendered)


def check_response(answer: Answer) -> external_auth_pb2.CheckResponse:
    return ok_response(answer) if isinstance(answer, Allowed) else denied_response(answer)


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


def source_certificate(source: attribute_context_pb2.AttributeContext.Peer) -> str:
    """C10: the downstream's client certificate as Envoy sends it (URL-encoded PEM, with
    `include_peer_certificate: true`), else the identity it names (`principal`: URI SAN or subject),
    trusted only under client_certificate_trust_bare_identity."""
    if source.certificate:
        return unquote(source.certificate)
    return source.principal


def _checked_request_headers(request: object) -> list[tuple[str, str]]:
    """The checked request's headers, for its trace context. A Check refused before its request was
    decoded (overload, a drain: the bytes as they came) or that does not decode has none."""
    if not isinstance(request, external_auth_pb2.CheckRequest):
        return []
    return request_headers(request.attributes.request.http)


# Tracing: a Check joins the trace of Envoy's own call (when Envoy traces) or else of the checked request.
tracing.request_carriers[f"/{SERVICE_NAME}/Check"] = _checked_request_headers


class ExtAuthzServicer(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, core: ExtAuthzCore) -> None:
        self._core = core
        self._certificates = core.reads_client_certificates  # C10
        # Traced: a check Watchword could not decide (a 503) names its reason on the span too.
        self._check = tracing.annotated(core.check, spans.undecided) if tracing.enabled else core.check

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        try:
            http = request.attributes.request.http
            path, _, query = http.path.partition("?")
            query = query.partition("#")[0] or http.query
            peer = source_certificate(request.attributes.source) if self._certificates else ""
            extensions = request.attributes.context_extensions
            answer = await self._check(
                http.method,
                path,
                query,
                request_headers(http),
                client_certificate=peer,
                extensions=extensions or None,
            )
            return check_response(answer)
        except Exception:  # the core answers its own faults; this is the adapter's: still a denial
            incident = uuid.uuid4().hex[:16]
            log.exception("internal error in the gRPC ext_authz adapter (incident %s)", incident)
            fault = unavailable(f"internal error (incident {incident})")
            if tracing.enabled:
                tracing.annotate(spans.fault(fault.reason))
            return denied_response(fault)
