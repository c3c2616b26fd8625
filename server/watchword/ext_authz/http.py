"""E4: Envoy's external authorization over plain HTTP (`http_service`), served by `http_server.py` on the
same event loop as the gRPC server (so it shares the pipeline and its caches).

Envoy sends each request's method and `path_prefix` + path (with its query) as the check request's own
method and path, and the headers its `allowed_headers` lets through (Authorization, Host, the method and
the path always). The answer, from the decision core:

- 200: allow; the `x-watchword-*` headers (and the rewritten cookie) go upstream through Envoy's
  `allowed_upstream_headers`, and `x-envoy-auth-headers-to-remove` lists the headers Envoy removes
  (spoofed `x-watchword-*` ones, the credential). Every answer, allow or refusal, carries its
  `x-watchword-decision-id` (and a dry-run allow its `x-watchword-would-be-*`), which Envoy's
  `dynamic_metadata_from_headers` turns into dynamic metadata for the access log;
- 401/403: Envoy answers the client with this status, the JSON body and the headers its
  `allowed_client_headers` lets through (`WWW-Authenticate` always);
- 503: Watchword cannot decide (store down, a fault, overload, shutting down). Envoy treats every 5xx as
  an error and answers `status_on_error` without the body: never an allow.

Envoy's HTTP mode cannot remove query parameters, so a T5 credential that must be removed is refused
(`query_credential_not_removable`); use the gRPC front door for those.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Protocol

from watchword import reasons
from watchword.ext_authz.core import DECISION_ID, Allowed, Answer, ExtAuthzCore, unavailable
from watchword.ext_authz.http_server import Response
from watchword.observe import call, request_id, spans, tracing
from watchword.observe.metrics import Metrics

log = logging.getLogger("watchword.ext_authz")

# The `rpc` label of this door's decisions and its latency histogram.
RPC = "ext_authz http"
REMOVE_HEADER = b"x-envoy-auth-headers-to-remove"
# The gRPC OverloadInterceptor's reasons (api/errors.py), in this door's 503 bodies.
OVERLOADED = "overloaded"
SHUTTING_DOWN = "shutting_down"
_JSON = (b"content-type", b"application/json")
_EMPTY = (b"content-length", b"0")
_DECISION_ID = DECISION_ID.encode("ascii")
# Where an Allowed answer keeps its encoding (see Allowed.rendered).
_RENDERED = "http"


class Admission(Protocol):
    """The replica-wide bound on checks in flight (the gRPC OverloadInterceptor is one)."""

    max_concurrent: int
    in_flight: int
    refused: int
    draining: bool


class _Unbounded:
    def __init__(self) -> None:
        self.max_concurrent, self.in_flight, self.refused, self.draining = 1 << 30, 0, 0, False


def _latin1(pairs: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def allowed_headers(allowed: Allowed) -> list[tuple[bytes, bytes]]:
    """The 200 answer's headers, made once per Allowed (plain allows are reused per principal)."""
    rendered = allowed.rendered.get(_RENDERED)
    if rendered is None:
        rendered = [_EMPTY, *_latin1(allowed.headers)]
        if allowed.remove:
            rendered.append((REMOVE_HEADER, ", ".join(allowed.remove).encode("latin-1")))
        allowed.rendered[_RENDERED] = rendered
    return rendered


def strip_prefix(raw_path: bytes, prefix: bytes) -> bytes | None:
    """The path Envoy checks, without the `path_prefix` it added; None when the prefix is missing (a
    request that did not come through the filter as configured)."""
    if not prefix:
        return raw_path
    if raw_path.startswith(prefix) and raw_path[len(prefix) : len(prefix) + 1] == b"/":
        return raw_path[len(prefix) :]
    return None


def decode_path(raw: bytes) -> str:
    """The path exactly as sent, for the route table; "" (matches no route) when it is not ASCII."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return ""


class HttpFrontDoor:
    """From one check request to its answer. `admission` bounds checks in flight with the gRPC calls (one
    bound per replica)."""

    def __init__(
        self,
        core: ExtAuthzCore,
        path_prefix: str = "",
        admission: Admission | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._core = core
        self._prefix = path_prefix.encode("ascii")
        self._admission = admission or _Unbounded()
        self._metrics = metrics or Metrics()
        self._latency = self._metrics.latency(RPC)
        if tracing.enabled:  # a check Watchword could not decide (a 503) names its reason on the span
            self._admitted = tracing.annotated(self._admitted, spans.undecided)  # type: ignore[method-assign]

    async def __call__(
        self, method: str, target: bytes, headers: list[tuple[str, str]], peer: str
    ) -> Response:
        """`target`: the request's path and query as sent; `headers`: lower-case names, latin-1 values
        (so the bytes Envoy sent come back unchanged, e.g. the cookies kept); `peer`: Envoy's address."""
        info = call.CallInfo(request_id.choose(headers), RPC, peer_address=peer)
        entered = call.current.set(info)
        started = time.perf_counter()
        rid = info.request_id.encode("ascii")
        try:
            response = encode(await self._admitted(method, target, headers), rid)
        except Exception:  # a fault here must still be a clean 503, never an allow
            incident = uuid.uuid4().hex[:16]
            log.exception("internal error in the HTTP ext_authz door (incident %s)", incident)
            fault = unavailable(f"internal error (incident {incident})")
            if tracing.enabled:
                tracing.annotate(spans.fault(fault.reason))
            response = encode(fault, rid)
        finally:
            call.current.reset(entered)
        self._latency.observe(time.perf_counter() - started)
        return response

    async def _admitted(self, method: str, target: bytes, headers: list[tuple[str, str]]) -> Answer:
        admission = self._admission
        if admission.draining:
            return unavailable("this replica is shutting down; retry on another replica", SHUTTING_DOWN)
        if admission.in_flight >= admission.max_concurrent:
            admission.refused += 1
            return unavailable("too many checks in flight on this replica; retry", OVERLOADED)
        admission.in_flight += 1
        self._metrics.in_flight += 1
        try:
            return await self._check(method, target, headers)
        finally:
            admission.in_flight -= 1
            self._metrics.in_flight -= 1

    async def _check(self, method: str, target: bytes, headers: list[tuple[str, str]]) -> Answer:
        raw_path, _, query = target.partition(b"#")[0].partition(b"?")
        path = strip_prefix(raw_path, self._prefix)
        if path is None:
            return await self._core.refuse(
                reasons.PATH_PREFIX_MISSING, "the path lacks the configured ext_authz_http_path_prefix"
            )
        answer = await self._core.check(
            method, decode_path(path), query.decode("utf-8", "replace"), headers, query_removable=False
        )
        if isinstance(answer, Allowed) and answer.remove_query:
            # Unreachable (the core refuses such requests first); if it ever happens, fail closed.
            log.error("an allow needed query parameters removed, which HTTP mode cannot do")
            return unavailable("this allow cannot be enforced over HTTP")
        return answer


def encode(answer: Answer, rid: bytes) -> Response:
    """Status, headers and body of the answer to Envoy."""
    request_id = (b"x-request-id", rid)
    # Decision ids are hex digits (observe/decisions.py); faults have none.
    decision = (_DECISION_ID, answer.decision_id.encode("ascii")) if answer.decision_id else None
    if isinstance(answer, Allowed):
        status, body = 200, b""
        headers = [*allowed_headers(answer), request_id]
    else:
        status, body = answer.status, answer.body.encode("utf-8")
        length = (b"content-length", str(len(body)).encode("ascii"))
        headers = [_JSON, length, *_latin1(answer.headers), request_id]
    if decision:
        headers.append(decision)
    return status, headers, body
