"""E1: Envoy's external authorization over gRPC, `envoy.service.auth.v3.Authorization/Check`.

A thin adapter: the CheckRequest's method, path, query and headers go to the decision core
(`watchword.ext_authz.core`), whose Allowed or Denied answer becomes a CheckResponse. Every failure is
answered as a denied CheckResponse rather than a gRPC error, so Envoy's `failure_mode_allow` is never
consulted.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from watchword.ext_authz.core import Allowed, Answer, Denied, ExtAuthzCore, unavailable
from watchword.observe import tracing

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


def denied_response(denied: Denied) -> external_auth_pb2.CheckResponse:
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(
            code=_CODES.get(denied.status, code_pb2.PERMISSION_DENIED), message=denied.reason
        ),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=denied.status),
            headers=[_header(*_JSON), *(_header(n, v) for n, v in denied.headers)],
            body=denied.body,
        ),
    )


def ok_response(allowed: Allowed) -> external_auth_pb2.CheckResponse:
    rendered = allowed.rendered.get(_RENDERED)
    if rendered is not None:
        return rendered
    ok = external_auth_pb2.OkHttpResponse(
        headers=[_header(name, value) for name, value in allowed.headers],
        headers_to_remove=allowed.remove,
        query_parameters_to_remove=allowed.remove_query,
    )
    response = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)
    allowed.rendered[_RENDERED] = response
    return response


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


# Tracing: a Check joins the trace of Envoy's own call (when Envoy traces) or else of the checked request.
tracing.request_carriers[f"/{SERVICE_NAME}/Check"] = lambda request: request_headers(
    request.attributes.request.http
)


class ExtAuthzServicer(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, core: ExtAuthzCore) -> None:
        self._core = core

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        try:
            http = request.attributes.request.http
            path, _, query = http.path.partition("?")
            query = query.partition("#")[0] or http.query
            answer = await self._core.check(http.method, path, query, request_headers(http))
            return check_response(answer)
        except Exception:  # the core answers its own faults; this is the adapter's: still a denial
            incident = uuid.uuid4().hex[:16]
            log.exception("internal error in the gRPC ext_authz adapter (incident %s)", incident)
            return denied_response(unavailable(f"internal error (incident {incident})"))
