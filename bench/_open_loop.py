"""Open-loop load: calls sent on a fixed clock whatever the answers, latency counted from when each was due.

wrk is closed loop (a slow answer delays the next request, so queueing hides: coordinated omission), and
no open-loop HTTP generator is packaged for Debian or PyPI here (wrk2 is not), so this is a small one:
asyncio, a pool of keep-alive HTTP/1.1 connections opened beforehand, httptools (the parser uvicorn
uses) to read the answers. Bounded: `rate * seconds` calls, each with its own timeout, loopback only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import httptools

Call = Callable[[], Awaitable[object]]
# What one call may wait for its answer before it counts as an error.
CALL_TIMEOUT = 5.0


@dataclass(frozen=True)
class Result:
    latencies_ms: list[float]  # from when each call was due to its answer
    late_ms: list[float]  # how late the generator itself sent each call (its own share of the above)
    errors: int
    sent: int
    seconds: float


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (sorted here)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def open_loop(
    next_call: Callable[[], Call], rate: float, seconds: float, errors: tuple[type[BaseException], ...]
) -> Result:
    """Send `rate` calls per second for `seconds`, on schedule, whether or not earlier calls answered.
    A call raising one of `errors` (or taking longer than CALL_TIMEOUT) counts as an error."""
    total = max(int(rate * seconds), 1)
    latencies: list[float] = []
    late: list[float] = []
    failed = 0

    async def one(call: Call, due: float) -> None:
        nonlocal failed
        # A timer may fire a little early; a call is never counted from before it was sent.
        sent = max(time.perf_counter(), due)
        late.append((sent - due) * 1000)
        try:
            await asyncio.wait_for(call(), CALL_TIMEOUT)
        except (TimeoutError, *errors):
            failed += 1
            return
        latencies.append((time.perf_counter() - due) * 1000)

    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for index in range(total):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(next_call(), due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_in = time.perf_counter() - started
    await asyncio.gather(*tasks)
    return Result(latencies, late, failed, total, sent_in)


class HttpCallError(Exception):
    """An answer other than 200, a malformed answer, or a connection that closed under a call."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpCallError(f"malformed answer: {exc}"))

    def on_message_complete(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(HttpCallError(f"connection closed: {exc}"))

    def _fail(self, error: HttpCallError) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)

    async def send(self, request: bytes) -> int:
        if self.transport is None:
            raise HttpCallError("connection closed")
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer


class HttpPool:
    """`connections` keep-alive connections to host:port, each call sending the same raw `request`; a
    call waits for a free connection (that wait counts in its latency, as queueing should)."""

    def __init__(self, host: str, port: int, request: bytes, connections: int) -> None:
        self.host, self.port, self.request, self.connections = host, port, request, connections
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _transport, connection = await loop.create_connection(_Connection, self.host, self.port)
        return connection

    async def __aenter__(self) -> HttpPool:
        for _ in range(self.connections):
            self._idle.put_nowait(await self._open())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection.transport is not None:
                connection.transport.close()

    async def call(self) -> None:
        connection = await self._idle.get()
        try:
            status = await connection.send(self.request)
        except BaseException:
            # The answer may still come (a timeout) or never will: this connection is done with.
            if connection.transport is not None:
                connection.transport.abort()
            self._idle.put_nowait(await self._open())
            raise
        self._idle.put_nowait(connection)
        if status != 200:
            raise HttpCallError(f"status {status}")


def get_request(path: str, headers: dict[str, str]) -> bytes:
    """The bytes of a `GET path` on a keep-alive HTTP/1.1 connection with these headers."""
    lines = [f"GET {path} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
