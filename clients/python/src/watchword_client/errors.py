"""Typed exceptions for failed calls, carrying the machine-readable reason of google.rpc.ErrorInfo.

Refusals and denials are results, never exceptions: these are raised only when Watchword could not
answer the question (down, overloaded, too slow, faulty) or the request itself was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from watchword_client.types import OutboundError

DOMAIN = "watchword"


class WatchwordError(Exception):
    """A call failed. `code` is the gRPC status name, `reason` the ErrorInfo reason ("" when absent)."""

    def __init__(
        self, code: str, reason: str, message: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code} {reason or '-'}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class WatchwordUnavailable(WatchwordError):
    """Watchword cannot answer now (UNAVAILABLE, RESOURCE_EXHAUSTED): retry later, never treat as allow."""


class WatchwordDeadlineExceeded(WatchwordUnavailable):
    """No answer within the deadline (including every retry)."""


class WatchwordInternalError(WatchwordError):
    """A fault in Watchword (INTERNAL); the message carries only an incident id."""


class InvalidRequest(WatchwordError):
    """INVALID_ARGUMENT: the request is malformed; `metadata["field"]` names the field when known."""


class CallerUnauthenticated(WatchwordError):
    """UNAUTHENTICATED: the call needed a caller token (e.g. SignOutbound) and had none or a bad one."""


class CallerNotAllowed(WatchwordError):
    """PERMISSION_DENIED: the caller token may not make this call."""


class NotFound(WatchwordError):
    """NOT_FOUND."""


class NotServed(WatchwordError):
    """UNIMPLEMENTED: the server does not serve this RPC (older version)."""


class OutboundSigningError(Exception):
    """SignOutbound answered an OutboundError, so the request cannot be sent; `error.retryable` says
    whether the delivery may be tried again later (after `error.retry_after`)."""

    def __init__(self, error: OutboundError) -> None:
        super().__init__(f"{error.reason}: {error.message}")
        self.error = error

    @property
    def retryable(self) -> bool:
        return self.error.retryable


_BY_CODE: dict[grpc.StatusCode, type[WatchwordError]] = {
    grpc.StatusCode.UNAVAILABLE: WatchwordUnavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: WatchwordUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: WatchwordDeadlineExceeded,
    grpc.StatusCode.INTERNAL: WatchwordInternalError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.UNAUTHENTICATED: CallerUnauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: CallerNotAllowed,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.UNIMPLEMENTED: NotServed,
}


def _error_info(error: grpc.Call) -> error_details_pb2.ErrorInfo | None:
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a trailer that contradicts the call's own status: trust neither detail
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN:
                return info
    return None


def from_rpc_error(error: grpc.RpcError) -> WatchwordError:
    """The typed exception for a failed call (works for sync and grpc.aio errors alike)."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    message: str = error.details() or ""  # type: ignore[attr-defined]
    info = _error_info(error)  # type: ignore[arg-type]
    reason = info.reason if info is not None else ""
    metadata = dict(info.metadata) if info is not None else {}
    kind = _BY_CODE.get(code, WatchwordError)
    return kind(code.name, reason, message, metadata)


def deadline_exceeded(message: str) -> WatchwordDeadlineExceeded:
    return WatchwordDeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED.name, "", message)
