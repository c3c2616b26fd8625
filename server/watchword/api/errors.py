"""RPC errors with a machine-readable reason: a google.rpc.Status carrying an ErrorInfo.

Clients read `ErrorInfo.reason` (stable codes listed in `ERROR_REASONS`) from the
`grpc-status-details-bin` trailer; the plain status message is for humans and never holds internals.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from watchword import domain
from watchword.observe import call, request_id

DOMAIN = "watchword"

REQUEST_UNDECODABLE = "request_undecodable"
FIELD_INVALID = "field_invalid"
NOT_FOUND = "not_found"
ADMIN_TOKEN_MISSING = "admin_token_missing"
ADMIN_TOKEN_INVALID = "admin_token_invalid"
STORE_UNAVAILABLE = "store_unavailable"
INTERNAL = "internal"
NOT_IMPLEMENTED = "not_implemented"
CALLER_TOKEN_MISSING = "caller_token_missing"
CALLER_NOT_ALLOWED = "caller_not_allowed"
# Overload and faults
OVERLOADED = "overloaded"
DEADLINE_EXCEEDED = "deadline_exceeded"
SHUTTING_DOWN = "shutting_down"

ERROR_REASONS: dict[str, str] = {
    REQUEST_UNDECODABLE: "INVALID_ARGUMENT: the request bytes are not a valid message (e.g. a string "
    "field that is not UTF-8).",
    FIELD_INVALID: "INVALID_ARGUMENT: a field is missing, too long or out of range; metadata `field` "
    "names it.",
    NOT_FOUND: "NOT_FOUND: the named organization, application, membership or credential does not exist.",
    ADMIN_TOKEN_MISSING: "UNAUTHENTICATED: an admin call without `authorization: Bearer <admin token>`.",
    ADMIN_TOKEN_INVALID: "UNAUTHENTICATED: the admin token is malformed, unknown, deactivated or expired.",
    STORE_UNAVAILABLE: "UNAVAILABLE: the store cannot be reached; retry with backoff. Never an allow.",
    INTERNAL: "INTERNAL: a fault in Watchword; the message carries an incident id under which the server "
    "log has the details.",
    NOT_IMPLEMENTED: "UNIMPLEMENTED: the RPC is part of the contract but not served by this version.",
    CALLER_TOKEN_MISSING: "UNAUTHENTICATED: SignOutbound without `authorization: Bearer <token>` of its "
    "caller.",
    CALLER_NOT_ALLOWED: "PERMISSION_DENIED: the caller is no admin token, and Authorize would not allow it "
    "`outbound.sign` in the outbound credential's organization (no such grant, or no role granting it).",
    OVERLOADED: "RESOURCE_EXHAUSTED: `max_concurrent_rpcs` calls are already in flight on this replica; "
    "retry with backoff, or on another replica.",
    DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED: the call's deadline had passed before Watchword started on it; "
    "no work was done.",
    SHUTTING_DOWN: "UNAVAILABLE: this replica is draining after SIGTERM: calls already admitted finish, new "
    "ones are refused; retry on another replica.",
}


# The message travels twice in the trailers (grpc-message, and in grpc-status-details-bin). Request values
# echoed in it (an unknown role, a field's text) must not push the trailers past the client's metadata
# limit (8 KiB by default), which turns the answer into RESOURCE_EXHAUSTED without its reason.
MAX_STATUS_MESSAGE_BYTES = 1024


def _bounded(message: str) -> str:
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_STATUS_MESSAGE_BYTES:
        return message
    return encoded[: MAX_STATUS_MESSAGE_BYTES - 3].decode("utf-8", "ignore") + "..."


def status_for(
    code: grpc.StatusCode, reason: str, message: str, metadata: dict[str, str] | None = None
) -> grpc.Status:
    message = _bounded(message)
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {})
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])
    return rpc_status.to_status(status)


async def abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    reason: str,
    message: str,
    metadata: dict[str, str] | None = None,
) -> NoReturn:
    status = status_for(code, reason, message, metadata)
    info = call.current.get()
    if info is not None:
        # The abort replaces the trailers set so far: the request id goes with it, the reason to the audit.
        info.error_reason = reason
        status = status._replace(  # type: ignore[attr-defined]
            trailing_metadata=(*status.trailing_metadata, (request_id.HEADER, info.request_id))
        )
    await context.abort_with_status(status)
    raise AssertionError("unreachable: abort_with_status raises")


async def invalid_field(context: grpc.aio.ServicerContext, field: str, problem: str) -> NoReturn:
    await abort(
        context, grpc.StatusCode.INVALID_ARGUMENT, FIELD_INVALID, f"{field}: {problem}", {"field": field}
    )


async def not_found(context: grpc.aio.ServicerContext, message: str) -> NoReturn:
    await abort(context, grpc.StatusCode.NOT_FOUND, NOT_FOUND, message)


# Raised by converters and by the domain's checks (minting), answered as INVALID_ARGUMENT by the guard.
FieldError = domain.FieldError
