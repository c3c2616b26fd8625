"""The interceptor that gives every unary RPC a request id, a latency observation and, for the calls
the audit log covers, a record when the servicer does not write one itself.

- Request id: the caller's `x-request-id` when valid (see `request_id.py`), else a new one; it is in
  `call.current` for logs and the audit log, and goes back as trailing metadata `x-request-id`.
- Admin calls (every one, read or change, allowed or refused) are audited here: which admin token, which
  call, on which ids (from a fixed list of id and name fields: never a secret field), and the result.
- AuthService calls that end in an error status (bad input, a refused SignOutbound caller, the store
  down) are audited and counted here; their decisions are recorded by the servicer (`decisions.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from watchword.observe import call, request_id, spans, tracing
from watchword.observe.audit import AuditLog, Record
from watchword.observe.metrics import LoopHistogram, Metrics

AUTH_PREFIX = "/watchword.v1.AuthService/"
ADMIN_PREFIX = "/watchword.v1.AdminService/"
# The method label of calls to a method no service serves.
UNKNOWN_METHOD = "unknown"
# Wrapped handlers kept: one per served method (unknown methods have no handler and are never kept).
MAX_WRAPPED_METHODS = 1024
# Request fields an admin record names: ids, names, kinds and grants. Nothing else is ever read (the
# requests also carry outbound secrets and public keys, which stay out of the log).
_REQUEST_FIELDS = frozenset(
    {
        "id",
        "organization_id",
        "application_id",
        "user_id",
        "token_id",
        "name",
        "kind",
        "scheme",
        "roles",
        "permissions",
        "overlap_seconds",
        "algorithm",
        "client_auth_method",
    }
)
_NESTED_REQUEST_FIELDS = frozenset({"membership", "credential"})
Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def note_admin_caller(admin_token_id: str) -> None:
    """Called by the admin interceptor once it accepted the token: the audit record names it."""
    info = call.current.get()
    if info is not None:
        info.admin_token_id = admin_token_id


def _value(field: Any, value: Any) -> Any:
    if field.enum_type is not None:
        named = field.enum_type.values_by_number.get(value)
        return named.name if named is not None else value
    if isinstance(value, str | int | bool):
        return value
    return [str(item) for item in value]  # repeated strings (roles, permissions)


def request_ids(request: object) -> dict[str, Any]:
    """The id, name and kind fields a request sets (one level of nesting), for the audit log."""
    if not isinstance(request, Message):
        return {}  # a rejected call's request is never decoded
    found: dict[str, Any] = {}
    for field, value in request.ListFields():
        if field.name in _REQUEST_FIELDS:
            found[field.name] = _value(field, value)
        elif field.name in _NESTED_REQUEST_FIELDS and isinstance(value, Message):
            for inner, inner_value in value.ListFields():
                if inner.name in _REQUEST_FIELDS:
                    found[f"{field.name}.{inner.name}"] = _value(inner, inner_value)
    return found


def response_id(response: object) -> str:
    """The id of what an admin call created or changed, when its answer names one."""
    if not isinstance(response, Message):
        return ""
    fields = response.DESCRIPTOR.fields_by_name
    for name in ("id", "kid"):
        if name in fields:
            return str(getattr(response, name))
    if "credential" in fields and response.HasField("credential"):  # type: ignore[attr-defined]
        return str(response.credential.id)  # type: ignore[attr-defined]
    return ""


@dataclass(slots=True)
class _Method:
    rpc: str
    latency: LoopHistogram
    admin: bool
    audited: bool


class ObserveInterceptor(grpc.aio.ServerInterceptor):
    """First in the chain, so it also sees the calls later interceptors turn away."""

    def __init__(
        self, metrics: Metrics, audit: AuditLog | None, served: frozenset[str] | None = None
    ) -> None:
        self._metrics = metrics
        self._audit = audit
        self._methods: dict[str, _Method] = {}
        # Method names come from callers, and the admin check and the overload bound answer any name, even
        # one no service serves: only served methods get their own entry (and latency series); every
        # other name shares one "unknown" entry, so no caller can grow the map or the metrics.
        self._served = served
        self._unknown = {
            admin: _Method(
                rpc=UNKNOWN_METHOD, latency=metrics.latency(UNKNOWN_METHOD), admin=admin, audited=True
            )
            for admin in (False, True)
        }
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def _method(self, name: str) -> _Method:
        method = self._methods.get(name)
        if method is None:
            admin = name.startswith(ADMIN_PREFIX)
            if self._served is not None and name not in self._served:
                return self._unknown[admin]
            method = _Method(
                rpc=name.rpartition("/")[2],
                latency=self._metrics.latency(name),
                admin=admin,
                audited=admin or name.startswith(AUTH_PREFIX),
            )
            self._methods[name] = method
        return method

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        name = handler_call_details.method
        if name.startswith(ADMIN_PREFIX):
            # The request id is chosen before the admin check, which runs in this coroutine and notes in
            # it the admin token it accepted.
            info = call.CallInfo(request_id.choose(handler_call_details.invocation_metadata), "")
            token = call.current.set(info)
            try:
                handler = await continuation(handler_call_details)
            finally:
                call.current.reset(token)
            if handler is None or handler.unary_unary is None:
                return handler
            method = self._methods.get(name) or self._method(name)
            info.rpc = method.rpc
            return grpc.unary_unary_rpc_method_handler(
                self._observed(handler.unary_unary, method, info, name),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        # Every other call: the wrapper is made once per method (gRPC runs interceptors on every call),
        # and the request id is read from the call's own metadata when it runs.
        cached = self._wrapped.get(name)
        if cached is not None and cached[0] is handler:
            return cached[1]
        method = self._methods.get(name) or self._method(name)
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._observed(handler.unary_unary, method, None, name),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        if len(self._wrapped) < MAX_WRAPPED_METHODS:  # method names come from callers: stay bounded
            self._wrapped[name] = (handler, wrapped)
        return wrapped

    def _observed(
        self, behavior: Behavior, method: _Method, admin_info: call.CallInfo | None, name: str
    ) -> Behavior:
        if tracing.enabled:  # decided once per wrapped method: off, the call path is unchanged
            served = name if method.rpc != UNKNOWN_METHOD else f"/{UNKNOWN_METHOD}/{UNKNOWN_METHOD}"
            behavior = tracing.traced_rpc(behavior, served, call.request_id, spans.rpc_failed)
        metrics = self._metrics
        header = request_id.HEADER

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if admin_info is None:
                info = call.CallInfo(request_id.choose(context.invocation_metadata()), method.rpc, context)
            else:
                info = admin_info
                info.context = context
            token = call.current.set(info)
            context.set_trailing_metadata(((header, info.request_id),))
            metrics.in_flight += 1
            started = time.perf_counter()
            response: Any = None
            failure = ""
            try:
                response = await behavior(request, context)
                return response
            except asyncio.CancelledError:
                failure = "CANCELLED"
                raise
            except BaseException:
                code = context.code()
                failure = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                method.latency.observe(time.perf_counter() - started)
                metrics.in_flight -= 1
                if method.audited and (failure or method.admin):
                    self._after(method, info, request, response, failure)
                call.current.reset(token)

        return observed

    def _after(self, method: _Method, info: call.CallInfo, request: Any, response: Any, failure: str) -> None:
        reason = info.error_reason or (failure.lower() if failure else "ok")
        if not method.admin:
            self._metrics.count_decision((method.rpc, "unknown", "error", reason))
        if self._audit is None:
            return
        what: dict[str, Any] = {"action": method.rpc}
        if method.admin:
            what["request"] = request_ids(request)
            if changed := response_id(response):
                what["target_id"] = changed
        record: Record = {
            "ts": time.time(),
            "request_id": info.request_id,
            "rpc": method.rpc,
            "who": {"admin_token_id": info.admin_token_id} if info.admin_token_id else {},
            "what": what,
            "result": "error" if failure else "ok",
            "reason": reason,
            "rule": "",
            "peer": info.peer(),
        }
        if failure:
            record["status"] = failure
        self._audit.write(record)
