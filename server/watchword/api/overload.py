"""Load shedding: a bound on the RPCs being worked on, and no work for calls whose deadline has passed.

Past `max_concurrent` calls in flight, a new call is answered RESOURCE_EXHAUSTED (reason `overloaded`)
at once, before its request is even decoded: a busy replica sheds load instead of queueing it, so
callers can retry elsewhere and latency stays bounded for the calls it accepted.

Health checks and server reflection are exempt: they answer from memory, and a load balancer that saw
a busy replica's health check fail would pull it and push its load onto the others. Streaming RPCs
(health Watch, reflection) are not counted for the same reason.

On shutdown, `drain()` makes new calls answer UNAVAILABLE (`shutting_down`, a reason clients retry
elsewhere on) while the calls already admitted finish; `wait_idle` tells when none is left. Just before
the gRPC server itself stops, `hold_refusals()` keeps those refusals waiting until `release_refusals()`:
gRPC cancels (CANCELLED, which clients do not retry) every call that reaches a stopping server before its
GOAWAY reached the client, so a client answered at that moment must not be sending its next call yet.

grpc's own `maximum_concurrent_rpcs` server option is not used: it refuses without an ErrorInfo reason,
and it counts health checks too, so a flood would make a busy replica look dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from watchword.api import errors
from watchword.observe import call

log = logging.getLogger("watchword.overload")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

# Wrapped handlers kept: one per served method (unknown methods have no handler and are never kept).
MAX_WRAPPED_METHODS = 1024
EXEMPT_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

# Built once: refusing under overload must stay cheaper than the work it refuses.
_OVERLOADED = errors.status_for(
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.OVERLOADED,
    "too many calls in flight on this replica; retry with backoff, or on another replica",
)
_DEADLINE_PASSED = errors.status_for(
    grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.DEADLINE_EXCEEDED,
    "the call's deadline had passed before work on it started",
)

_SHUTTING_DOWN = errors.status_for(
    grpc.StatusCode.UNAVAILABLE,
    errors.SHUTTING_DOWN,
    "this replica is shutting down; retry on another replica",
)


def _note(reason: str) -> None:
    """The refusal's reason for the audit record, the metrics and the span (the abort carries it too)."""
    info = call.current.get()
    if info is not None:
        info.error_reason = reason


async def _refuse_overloaded(_request: Any, context: grpc.aio.ServicerContext) -> Any:
    _note(errors.OVERLOADED)
    await context.abort_with_status(_OVERLOADED)


# No deserializer: an excess call's request is not even decoded.
_OVERLOADED_HANDLER = grpc.unary_unary_rpc_method_handler(_refuse_overloaded)


# A held refusal is answered this long before its deadline, so a short deadline still sees UNAVAILABLE.
HOLD_MARGIN_SECONDS = 0.05
# Longest a refusal is held, whatever happens to the shutdown.
MAX_HOLD_SECONDS = 2.0


class OverloadInterceptor(grpc.aio.ServerInterceptor):
    """Counts unary calls in flight; refuses past `max_concurrent`; drops calls already past deadline."""

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        self.in_flight = 0
        self.refused = 0  # calls answered RESOURCE_EXHAUSTED: for tests and metrics
        self.expired = 0  # calls answered DEADLINE_EXCEEDED without work
        self.draining = False
        self.held = 0  # refusals waiting for release_refusals()
        self._holding = False
        self._released = asyncio.Event()
        self._shutting_down_handler = grpc.unary_unary_rpc_method_handler(self._refuse_shutting_down)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def drain(self) -> None:
        """From now on refuse new calls (UNAVAILABLE `shutting_down`); admitted ones carry on."""
        self.draining = True

    def hold_refusals(self) -> None:
        """From now on a refused call waits for `release_refusals()` (bounded by its deadline)."""
        self._holding = True

    def release_refusals(self) -> None:
        self._released.set()

    async def _refuse_shutting_down(self, _request: Any, context: grpc.aio.ServicerContext) -> Any:
        if self._holding and self.held < self.max_concurrent:
            self.held += 1
            try:
                await self._wait_release(context.time_remaining())
            finally:
                self.held -= 1
        _note(errors.SHUTTING_DOWN)
        await context.abort_with_status(_SHUTTING_DOWN)

    async def _wait_release(self, remaining: float | None) -> None:
        hold = (
            MAX_HOLD_SECONDS if remaining is None else min(remaining - HOLD_MARGIN_SECONDS, MAX_HOLD_SECONDS)
        )
        if hold > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), hold)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no admitted call is being worked on; False if some still are after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.in_flight > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method.startswith(EXEMPT_PREFIXES):
            return await continuation(handler_call_details)
        if self.draining:
            return self._shutting_down_handler
        if self.in_flight >= self.max_concurrent:
            # Before the continuation: under overload even the admin token check is not worth a query.
            self.refused += 1
            return _OVERLOADED_HANDLER
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        # Wrapped once per method, not per call (the admin interceptor's refusals are made per call and
        # are not kept: only the handler the server hands out again is).
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = grpc.unary_unary_rpc_method_handler(
            self.bounded(handler.unary_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        if len(self._wrapped) < MAX_WRAPPED_METHODS:  # method names come from callers: stay bounded
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    def bounded(self, behavior: Behavior, method: str = "") -> Behavior:
        """`behavior`, counted while it runs. The bound is checked again here: calls admitted by
        `intercept_service` at the same moment may together have filled it while their requests were read."""

        async def bounded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if self.in_flight >= self.max_concurrent:
                self.refused += 1
                _note(errors.OVERLOADED)
                await context.abort_with_status(_OVERLOADED)
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                self.expired += 1
                log.debug("not working on a call whose deadline has passed: %s", method)
                _note(errors.DEADLINE_EXCEEDED)
                await context.abort_with_status(_DEADLINE_PASSED)
            self.in_flight += 1
            try:
                return await behavior(request, context)
            finally:
                self.in_flight -= 1

        return bounded
