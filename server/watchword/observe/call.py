"""What is known about the RPC being served, for logs and the audit log (set by the interceptor)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class CallInfo:
    request_id: str
    rpc: str  # the method's short name, e.g. "Authorize"
    context: Any = None  # the grpc.aio.ServicerContext; the peer is read only when a record is written
    admin_token_id: str = ""  # set once the admin interceptor accepted the caller's admin token
    error_reason: str = ""  # the ErrorInfo reason of an abort, for the audit log
    peer_address: str = ""  # for calls without a gRPC context (the HTTP token endpoint)

    def peer(self) -> str:
        if self.context is None:
            return self.peer_address
        try:
            return str(self.context.peer() or "")
        except Exception:  # a finished call may no longer know its peer; the record goes out anyway
            return ""


current: ContextVar[CallInfo | None] = ContextVar("watchword_call", default=None)


def request_id() -> str:
    """The current call's request id, or "" outside an RPC."""
    info = current.get()
    return info.request_id if info is not None else ""
