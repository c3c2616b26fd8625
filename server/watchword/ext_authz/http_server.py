"""E4's listener: HTTP/1.1 for one client, Envoy, on llhttp (the `httptools` parser, the one uvicorn uses).

A general HTTP server (uvicorn, granian) builds an ASGI scope, a task and message dicts per request and
checks every response header it is handed; measured here, that cost a check about as much as Watchword's
whole decision. Envoy's `http_service` sends one small request at a time per connection, keeps the
connection alive and reads one answer with a known length, so this protocol does only that:

- parse with llhttp; a malformed request, a header block above `max_header_bytes` or a body above
  MAX_BODY_BYTES gets 400 (or 413) and the connection is closed;
- answer requests in order (pipelined ones wait their turn; reading pauses past MAX_QUEUED);
- run the check eagerly: a check that never waits (warm caches) is answered within `data_received`,
  without a task; one that waits continues in a task in the same context;
- bounds as on the other HTTP ports (listeners.py): past `max_connections` a new connection is closed at
  once, and a connection must send a whole request within `idle_seconds` of connecting or of its last
  answer;
- drain on stop: the listener closes, idle connections close, busy ones close after their answer.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import ssl
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, cast

import httptools

from watchword import https, reasons

log = logging.getLogger("watchword.ext_authz")

# Status, headers (name, value) and body of one answer.
Response = tuple[int, list[tuple[bytes, bytes]], bytes]
# The check: method, request target (path and query, as sent), headers (lower-case names, latin-1),
# the client's address "host:port".
Check = Callable[[str, bytes, list[tuple[str, str]], str], Coroutine[Any, Any, Response]]

# Envoy sends a body only with `with_request_body`, which Watchword does not use: a bound, not a need.
MAX_BODY_BYTES = 64 * 1024
# Requests read ahead of the one being answered before reading pauses.
MAX_QUEUED = 8
REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    413: b"Payload Too Large",
    503: b"Service Unavailable",
}


def encode_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, close: bool) -> bytes:
    """The answer's bytes, written in one go. `headers` come from the door: fixed names, values it encoded
    itself (ASCII without CR or LF), never copied from the request."""
    lines = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Unknown"))]
    lines.extend(name + b": " + value for name, value in headers)
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _refusal(status: int, error: str, reason: str) -> bytes:
    body = b'{"error":"%s","reason":"%s"}' % (error.encode("ascii"), reason.encode("ascii"))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return encode_response(status, headers, body, close=True)


BAD_REQUEST = _refusal(400, "bad_request", reasons.MALFORMED_HTTP_REQUEST)
HEADER_TOO_LARGE = _refusal(400, "bad_request", reasons.REQUEST_HEADER_TOO_LARGE)
BODY_TOO_LARGE = _refusal(413, "bad_request", reasons.REQUEST_BODY_TOO_LARGE)
# A fault outside the door's own handling (a bug): 503 like every other fault, never an allow.
INTERNAL_ERROR = _refusal(503, "unavailable", reasons.AUTHORIZATION_UNAVAILABLE)


class _Refuse(Exception):
    """From a parser callback: answer `response` and close (llhttp turns it into a parse error)."""

    def __init__(self, response: bytes) -> None:
        super().__init__()
        self.response = response


@dataclass(slots=True)
class _Request:
    method: str
    target: bytes
    headers: list[tuple[str, str]]
    keep_alive: bool


class CheckConnection(asyncio.Protocol):
    """One connection from Envoy."""

    def __init__(self, listener: CheckListener) -> None:
        self._listener = listener
        self._loop = listener.loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._queue: deque[_Request] = deque()
        self._busy = False
        self._closing = False  # no more requests are read; close once the queue is answered
        self._final = b""  # written last, before closing (a 400 after the requests read before it)
        self._paused = False
        self._write_blocked = False
        # When an idle connection is closed (0: never, a request is being answered); the listener's sweep
        # checks it, so a request costs no timer of its own.
        self.deadline = 0.0
        self._url: list[bytes] = []
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._body_bytes = 0

    # Connection events.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass, so no isinstance check).
        transport = cast(asyncio.Transport, transport)
        listener = self._listener
        if len(listener.connections) >= listener.max_connections or listener.stopping:
            transport.abort()  # nothing was read: nothing to answer, no descriptor kept
            return
        self._transport = transport
        listener.connections.add(self)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self._start_idle_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.connections.discard(self)
        self._stop_idle_clock()
        self._transport = None
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # nothing after a request that closes the connection is read
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.shut_if_idle()  # the request was read; what follows is not HTTP/1.1 for us
        except httptools.HttpParserError as error:
            cause = error.__context__
            self._final = cause.response if isinstance(cause, _Refuse) else BAD_REQUEST
            self.shut_if_idle()  # the requests read before the bad one are answered first

    # Flow control: a client that does not read its answers stops being read.
    def pause_writing(self) -> None:
        self._write_blocked = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self._update_reading()

    def _update_reading(self) -> None:
        pause = self._write_blocked or len(self._queue) > MAX_QUEUED
        if pause != self._paused and self._transport is not None:
            self._paused = pause
            if pause:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    # Parser callbacks.
    def on_message_begin(self) -> None:
        self._url, self._headers, self._header_bytes, self._body_bytes = [], [], 0, 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF, as on the wire
        self._headers.append((name.lower().decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY_BYTES:
            raise _Refuse(BODY_TOO_LARGE)

    def on_message_complete(self) -> None:
        if self._closing:
            return  # pipelined behind a request that closes the connection: never answered
        parser = self._parser
        method = parser.get_method().decode("ascii")
        target = b"".join(self._url)
        self._queue.append(_Request(method, target, self._headers, parser.should_keep_alive()))
        self._update_reading()
        if not self._busy:
            self._next()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._listener.max_header_bytes:
            raise _Refuse(HEADER_TOO_LARGE)

    # Answering, one request at a time.
    def _next(self) -> None:
        self._stop_idle_clock()
        self._update_reading()
        if not self._queue:
            self._busy = False
            if self._closing:
                self._finish()
            else:
                self._start_idle_clock()
            return
        self._busy = True
        request = self._queue.popleft()
        check = self._listener.check(request.method, request.target, request.headers, self._peer)
        run_eagerly(check, lambda response: self._answer(request, response), self._loop)

    def _answer(self, request: _Request, response: Response | BaseException) -> None:
        if self._transport is None:
            return  # the client went away while its check ran
        if isinstance(response, BaseException):
            self._busy, self._closing, self._final = False, True, INTERNAL_ERROR
            self._queue.clear()
            self._finish()
            return
        close = not request.keep_alive or self._listener.stopping
        last = close or (self._closing and not self._queue and not self._final)
        self._transport.write(encode_response(*response, close=last))
        if close:  # nothing after it is answered, not even a 400 for what followed
            self._closing, self._final = True, b""
            self._queue.clear()
        self._next()

    # Closing.
    def shut_if_idle(self) -> None:
        """Read nothing more; close now when no answer is being worked on, else after the last one."""
        self._closing = True
        if not self._busy:
            self._finish()

    def abort(self) -> None:
        """Past the stop's grace: drop the connection, answered or not."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _finish(self) -> None:
        self._stop_idle_clock()
        if self._transport is not None and not self._transport.is_closing():
            if self._final:
                self._transport.write(self._final)
            self._transport.close()

    def _start_idle_clock(self) -> None:
        self.deadline = self._loop.time() + self._listener.idle_seconds

    def _stop_idle_clock(self) -> None:
        self.deadline = 0.0

    def close_if_idle_since(self, now: float) -> None:
        """From the listener's sweep: no whole request within `idle_seconds`."""
        if self.deadline and now >= self.deadline and not self._busy and self._transport is not None:
            log.debug("closing an ext_authz connection that sent no whole request in time")
            self._transport.abort()


def run_eagerly(
    coroutine: Coroutine[Any, Any, Response],
    done: Callable[[Response | BaseException], None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Run `coroutine` now, in a context of its own, and hand its result (or exception) to `done`. When it
    waits for something, the rest runs in a task, in that same context (Python 3.12's eager tasks)."""
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coroutine.send, None)
    except StopIteration as finished:
        done(finished.value)
        return
    except Exception as error:  # the door answers its own faults; this is a bug, never an allow
        log.exception("internal error in the ext_authz HTTP listener")
        done(error)
        return
    task = loop.create_task(_resume(coroutine, waiting_on), context=context)
    _waiting.add(task)  # the loop keeps only a weak reference to a task
    task.add_done_callback(_waiting.discard)
    task.add_done_callback(lambda finished: done(_outcome(finished)))


# The checks that wait, until they finish.
_waiting: set[asyncio.Task[Response]] = set()


def _outcome(task: asyncio.Task[Response]) -> Response | BaseException:
    if task.cancelled():
        return asyncio.CancelledError()
    error = task.exception()
    if error is not None:
        log.error("internal error in the ext_authz HTTP listener", exc_info=error)
        return error
    return task.result()


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, Response], waiting_on: Any) -> Generator[Any, Any, Response]:
    """Drive the rest of a coroutine that has already run to its first wait (what a task does for it)."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as thrown:  # cancellation and the like go on into the coroutine
            try:
                waiting_on = coroutine.throw(thrown)
            except StopIteration as finished:
                return finished.value  # type: ignore[no-any-return]
            continue
        try:
            waiting_on = coroutine.send(sent)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]


class CheckListener:
    """The E4 port: accepts Envoy's connections and answers each request with `check`."""

    def __init__(
        self,
        check: Check,
        max_connections: int,
        idle_seconds: float,
        max_header_bytes: int,
        stop_grace_seconds: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.check = check
        self.tls = tls  # None: plaintext
        self.stop_grace_seconds = stop_grace_seconds
        self.max_connections = max_connections
        self.idle_seconds = idle_seconds
        self.max_header_bytes = max_header_bytes
        self.connections: set[CheckConnection] = set()
        self.stopping = False
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._sweeping: asyncio.TimerHandle | None = None
        # How often idle connections are looked for: a connection lives at most this much past its bound.
        self._sweep_seconds = max(0.05, min(1.0, idle_seconds / 4))
        self.port = 0

    async def start(self, listener: socket.socket) -> None:
        self.port = listener.getsockname()[1]
        # Over TLS, a connection that has not finished its handshake in time is dropped (asyncio's default
        # is a minute); it is counted against the bound only once the handshake is done.
        timeout = https.HANDSHAKE_TIMEOUT_SECONDS if self.tls is not None else None
        self._server = await self.loop.create_server(
            lambda: CheckConnection(self), sock=listener, ssl=self.tls, ssl_handshake_timeout=timeout
        )
        self._sweep()

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            connection.close_if_idle_since(now)
        self._sweeping = self.loop.call_later(self._sweep_seconds, self._sweep)

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop accepting, close idle connections, let busy ones answer (at most `grace_seconds`, by
        default `stop_grace_seconds`)."""
        grace_seconds = self.stop_grace_seconds if grace_seconds is None else grace_seconds
        self.stopping = True
        if self._sweeping is not None:
            self._sweeping.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.shut_if_idle()
        await _until(lambda: not self.connections, grace_seconds)
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
