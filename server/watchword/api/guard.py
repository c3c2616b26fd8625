"""Server interceptors that keep every unary RPC answer clean.

- Requests that do not decode (bad wire bytes, strings that are not UTF-8) get INVALID_ARGUMENT instead
  of gRPC's default INTERNAL, by decoding leniently and checking in the handler.
- FieldError -> INVALID_ARGUMENT naming the field; store connection faults -> UNAVAILABLE; anything
  else -> INTERNAL with a request id, the traceback going to the server log only.
- Admin calls need a valid admin token (checked before the servicer runs).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from watchword.api import errors
from watchword.observe.interceptor import note_admin_caller
from watchword.store.database import outage_cause

log = logging.getLogger("watchword.rpc")

ADMIN_PREFIX = "/watchword.v1.AdminService/"
# Wrapped handlers kept (one per served method; unknown methods have no handler and are never kept).
MAX_WRAPPED_METHODS = 1024


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands in for a request whose bytes did not decode."""

    problem: str


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data) if deserializer else data
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return Undecodable(type(exc).__name__)

    return deserialize


Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _guarded(behavior: Behavior, method: str) -> Behavior:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await errors.abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                errors.REQUEST_UNDECODABLE,
                "the request is not a valid message (check field types and that strings are UTF-8)",
            )
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except errors.FieldError as exc:
            await errors.invalid_field(context, exc.field, exc.problem)
        except DataError:
            # A value the database refuses (e.g. one it cannot hold): the request's fault, not an outage.
            log.info("store refused a value during %s", method)
            await errors.abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                errors.FIELD_INVALID,
                "a value in the request cannot be stored",
            )
        except (OperationalError, PoolTimeoutError, DBAPIError, ConnectionError, OSError) as exc:
            # An outage fails every call alike: one line each (rate-limited), the cause without a traceback.
            log.warning("store unavailable during %s: %s", method, outage_cause(exc))
            await errors.abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                errors.STORE_UNAVAILABLE,
                "the store is unavailable; retry",
            )
        except Exception:
            incident = uuid.uuid4().hex[:16]
            log.exception("internal error in %s (incident %s)", method, incident)
            await errors.abort(
                context, grpc.StatusCode.INTERNAL, errors.INTERNAL, f"internal error (incident {incident})"
            )

    return guarded


class GuardInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        # gRPC runs interceptors on every call: wrap each method's handler once, not per call. Keyed by
        # method, and used only while the server hands out the very same handler it was made from.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = grpc.unary_unary_rpc_method_handler(
            _guarded(handler.unary_unary, method),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
        if len(self._wrapped) < MAX_WRAPPED_METHODS:  # method names come from callers: stay bounded
            self._wrapped[method] = (handler, wrapped)
        return wrapped


AdminCheck = Callable[[str], Awaitable[str | None]]


def _rejecting(
    reason: str, message: str, code: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED
) -> grpc.RpcMethodHandler:
    async def reject(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await errors.abort(context, code, reason, message)

    # No deserializer: the request is not even decoded for an unauthenticated caller.
    return grpc.unary_unary_rpc_method_handler(reject)


class AdminAuthInterceptor(grpc.aio.ServerInterceptor):
    """Admin calls must carry `authorization: Bearer <admin token>`; `check` says whether it is valid."""

    def __init__(self, check: AdminCheck) -> None:
        self._check = check

    @property
    def check(self) -> AdminCheck:
        """Whether a token is a valid admin token (its id, or None); also used by SignOutbound."""
        return self._check

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if not handler_call_details.method.startswith(ADMIN_PREFIX):
            return await continuation(handler_call_details)
        values = [
            value
            for key, value in (handler_call_details.invocation_metadata or ())
            if key == "authorization" and isinstance(value, str)
        ]
        if len(values) != 1 or not values[0].lower().startswith("bearer "):
            return _rejecting(
                errors.ADMIN_TOKEN_MISSING, "admin calls need `authorization: Bearer <admin token>`"
            )
        try:
            admin_id = await self._check(values[0][7:].strip())
        except (OperationalError, DBAPIError, OSError) as exc:
            log.warning("store unavailable while checking an admin token: %s", outage_cause(exc))
            return _rejecting(
                errors.STORE_UNAVAILABLE, "the store is unavailable; retry", grpc.StatusCode.UNAVAILABLE
            )
        if admin_id is None:
            return _rejecting(errors.ADMIN_TOKEN_INVALID, "the admin token is not valid")
        note_admin_caller(admin_id)  # the audit record names the admin token
        return await continuation(handler_call_details)
