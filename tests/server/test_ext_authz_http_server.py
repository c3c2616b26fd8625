"""E4: the ext_authz HTTP listener's protocol (ext_authz/http_server.py) on real loopback sockets and on a
stand-in transport: answers in order on a kept-alive connection, pipelining, closing, the bounds (header,
body, idle, connections), faults in a check, eager runs and the ones that wait, and the drain on stop."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchword.ext_authz.http_server import CheckConnection, CheckListener, Response, run_eagerly
from watchword.listeners import tcp_listener

MAX_HEADER = 4096
IDLE = 0.5
ALLOW: Response = (200, [(b"content-length", b"0"), (b"x-check", b"allow")], b"")


def answer_with(status: int, body: bytes = b"") -> Response:
    return status, [(b"content-length", b"%d" % len(body))], body


class Checks:
    """A check that records what it was asked; `gate` (when set) makes it wait before answering."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, list[tuple[str, str]], str]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(
        self, method: str, target: bytes, headers: list[tuple[str, str]], peer: str
    ) -> Response:
        self.seen.append((method, target, headers, peer))
        if self.gate is not None and target.endswith(b"/slow"):
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("a bug in the check")
        return answer_with(200, target)


@pytest.fixture
async def served() -> AsyncIterator[tuple[CheckListener, Checks]]:
    checks = Checks()
    listener = CheckListener(checks, 4, IDLE, MAX_HEADER)
    await listener.start(tcp_listener("127.0.0.1", 0))
    yield listener, checks
    await listener.stop(1.0)


async def connect(listener: CheckListener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", listener.port)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def closed(reader: asyncio.StreamReader, within: float = 5) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except ConnectionResetError:
        return True


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "host: envoy", *extra]) + "\r\n\r\n").encode()


async def test_e4_requests_on_one_kept_alive_connection_are_answered_in_order(served) -> None:
    listener, checks = served
    reader, writer = await connect(listener)
    for path in ("/a?x=1", "/b"):
        writer.write(get(path, "Authorization: Bearer t"))
        status, headers, body = await read_answer(reader)
        assert (status, body) == (200, path.encode())
        assert "connection" not in headers
    assert [seen[1] for seen in checks.seen] == [b"/a?x=1", b"/b"]
    method, _target, headers, peer = checks.seen[0]
    assert method == "GET"
    assert ("authorization", "Bearer t") in headers  # names lower-cased, values as sent
    assert peer.startswith("127.0.0.1:")
    writer.close()


async def test_e4_pipelined_requests_wait_their_turn_behind_a_check_that_waits(served) -> None:
    listener, checks = served
    checks.gate = asyncio.Event()
    reader, writer = await connect(listener)
    writer.write(get("/slow") + get("/fast") + get("/last"))
    await asyncio.sleep(0.1)
    assert [seen[1] for seen in checks.seen] == [b"/slow"]  # the next one is not even started
    checks.gate.set()
    bodies = [(await read_answer(reader))[2] for _ in range(3)]
    assert bodies == [b"/slow", b"/fast", b"/last"]
    writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        get("/a", "Connection: close"),
        b"GET /a HTTP/1.0\r\nhost: envoy\r\n\r\n",
    ],
)
async def test_e4_a_request_that_does_not_keep_alive_is_answered_then_closed(served, request_bytes) -> None:
    reader, writer = await connect(served[0])
    writer.write(request_bytes)
    status, headers, _body = await read_answer(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await closed(reader)


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed_http_request"),
        (b"GET /a HTTP/1.1\r\nbad header line\r\n\r\n", 400, "malformed_http_request"),
        (
            b"GET /a HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
            400,
            "malformed_http_request",
        ),
        (get("/a", "x-big: " + "b" * MAX_HEADER), 400, "request_header_too_large"),
        (get("/" + "p" * MAX_HEADER), 400, "request_header_too_large"),
        (b"POST /a HTTP/1.1\r\ncontent-length: 70000\r\n\r\n" + b"x" * 70000, 413, "request_body_too_large"),
    ],
)
async def test_e4_bad_requests_get_400_or_413_with_a_reason_and_the_connection_closes(
    served, request_bytes: bytes, status: int, reason: str
) -> None:
    listener, checks = served
    reader, writer = await connect(listener)
    writer.write(request_bytes)
    answer_status, headers, body = await read_answer(reader)
    assert (answer_status, headers["connection"]) == (status, "close")
    assert reason.encode() in body
    assert await closed(reader)
    assert checks.seen == []  # never decided


async def test_e4_nothing_pipelined_behind_a_closing_request_is_decided(served) -> None:
    listener, checks = served
    reader, writer = await connect(listener)
    writer.write(get("/a", "Connection: close") + get("/b"))
    assert (await read_answer(reader))[2] == b"/a"
    assert await closed(reader)
    assert [seen[1] for seen in checks.seen] == [b"/a"]


async def test_e4_an_upgrade_request_is_answered_then_the_connection_closes(served) -> None:
    listener, checks = served
    reader, writer = await connect(listener)
    writer.write(get("/a", "Connection: upgrade", "Upgrade: websocket") + b"\x81\x05hello")
    status, _headers, body = await read_answer(reader)
    assert (status, body) == (200, b"/a")
    assert await closed(reader)
    assert len(checks.seen) == 1


async def test_e4_a_bad_request_behind_a_waiting_check_is_refused_after_its_answer(served) -> None:
    listener, checks = served
    checks.gate = asyncio.Event()
    reader, writer = await connect(listener)
    writer.write(get("/slow") + b"BAD REQUEST LINE\r\n\r\n")
    await asyncio.sleep(0.1)
    checks.gate.set()
    assert (await read_answer(reader))[:1] == (200,)
    status, headers, body = await read_answer(reader)
    assert (status, headers["connection"]) == (400, "close")
    assert b"malformed_http_request" in body
    assert await closed(reader)


async def test_e4_a_small_body_is_read_and_ignored(served) -> None:
    reader, writer = await connect(served[0])
    writer.write(b"POST /a HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello" + get("/b"))
    assert (await read_answer(reader))[2] == b"/a"
    assert (await read_answer(reader))[2] == b"/b"
    writer.close()


async def test_e4_a_check_that_fails_is_answered_503_never_an_allow(served) -> None:
    listener, checks = served
    checks.fail = True
    reader, writer = await connect(listener)
    writer.write(get("/a"))
    status, headers, body = await read_answer(reader)
    assert (status, headers["connection"]) == (503, "close")
    assert b"authorization_unavailable" in body
    assert await closed(reader)


async def test_e4_idle_and_half_sent_connections_are_closed_and_others_refused_past_the_bound(served) -> None:
    listener, _checks = served
    silent = await connect(listener)
    slow = await connect(listener)
    slow[1].write(b"GET /a HTTP/1.1\r\nhost: x\r\n")  # never finishes its header
    assert await closed(silent[0], IDLE + 2)
    assert await closed(slow[0], 2)
    held = [await connect(listener) for _ in range(4)]
    await asyncio.sleep(0.1)
    extra = await connect(listener)
    assert await closed(extra[0], 1)  # past the bound: closed at once, nothing read
    for _reader, writer in held:
        writer.close()


async def test_e4_stop_closes_idle_connections_and_lets_a_busy_one_answer_first(served) -> None:
    listener, checks = served
    checks.gate = asyncio.Event()
    idle = await connect(listener)
    busy = await connect(listener)
    busy[1].write(get("/slow"))
    await asyncio.sleep(0.1)
    stopping = asyncio.create_task(listener.stop(5.0))
    assert await closed(idle[0], 2)
    assert not stopping.done()
    checks.gate.set()
    status, headers, _body = await read_answer(busy[0])
    assert (status, headers["connection"]) == (200, "close")
    await asyncio.wait_for(stopping, 5)
    assert listener.connections == set()
    with pytest.raises(OSError):
        await connect(listener)


async def test_e4_a_client_that_leaves_while_its_check_waits_is_forgotten(served) -> None:
    listener, checks = served
    checks.gate = asyncio.Event()
    _reader, writer = await connect(listener)
    writer.write(get("/slow"))
    await asyncio.sleep(0.1)
    writer.close()
    await asyncio.sleep(0.1)
    checks.gate.set()
    await asyncio.sleep(0.05)
    assert listener.connections == set()


# run_eagerly: the same outcome as a task, without one when the check never waits.
marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="")


async def sets_and_waits(wait: bool) -> Response:
    token = marker.set("inside")
    if wait:
        await asyncio.sleep(0.01)
    marker.reset(token)  # only works in the context the set was made in
    return ALLOW


@pytest.mark.parametrize("wait", [False, True])
async def test_e4_an_eager_check_keeps_one_context_whether_or_not_it_waits(wait: bool) -> None:
    results: list[Any] = []
    finished = asyncio.Event()
    tasks_before = len(asyncio.all_tasks())

    def done(outcome: Any) -> None:
        results.append(outcome)
        finished.set()

    run_eagerly(sets_and_waits(wait), done, asyncio.get_running_loop())
    assert (len(asyncio.all_tasks()) > tasks_before) == wait  # a task only for the one that waits
    gc.collect()  # a waiting check's task is kept alive by more than the loop's weak reference
    await asyncio.wait_for(finished.wait(), 5)
    assert results == [ALLOW]
    assert marker.get() == ""  # the caller's context is untouched


async def test_e4_an_eager_check_that_raises_after_waiting_hands_over_the_error() -> None:
    async def fails() -> Response:
        await asyncio.sleep(0)
        raise ValueError("boom")

    finished: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    run_eagerly(fails(), finished.set_result, asyncio.get_running_loop())
    assert isinstance(await asyncio.wait_for(finished, 5), ValueError)


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def test_e4_a_client_that_does_not_read_its_answers_stops_being_read() -> None:
    connection = CheckConnection(CheckListener(refuse, 4, 30.0, MAX_HEADER))
    transport = _Transport()
    connection.connection_made(transport)
    connection.pause_writing()  # the kernel's and asyncio's buffers are full
    assert transport.reading is False
    connection.resume_writing()
    assert transport.reading is True
    connection.connection_lost(None)


async def refuse(method: str, target: bytes, headers: list[tuple[str, str]], peer: str) -> Response:
    return answer_with(403, b'{"reason":"route_not_configured"}')


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=6))
def test_e4_property_any_bytes_get_answers_that_are_never_an_allow(chunks: list[bytes]) -> None:
    async def feed() -> bytes:
        connection = CheckConnection(CheckListener(refuse, 4, 30.0, MAX_HEADER))
        transport = _Transport()
        connection.connection_made(transport)
        for chunk in chunks:
            if transport.closed:
                break
            connection.data_received(chunk)
        connection.connection_lost(None)
        return transport.written

    written = asyncio.run(feed())
    statuses = {int(line.split()[1]) for line in written.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")}
    assert statuses <= {400, 403, 413}
    assert b"HTTP/1.1 200" not in written


@settings(max_examples=100, deadline=None)
@given(paths=st.lists(st.text(alphabet="abc/?=%&", min_size=1, max_size=20), min_size=1, max_size=5))
def test_e4_property_pipelined_requests_split_anywhere_get_one_answer_each_in_order(paths: list[str]) -> None:
    wire = b"".join(get("/" + path) for path in paths)

    async def feed(split: int) -> bytes:
        async def echo(method: str, target: bytes, headers: list[tuple[str, str]], peer: str) -> Response:
            return answer_with(200, target)

        connection = CheckConnection(CheckListener(echo, 4, 30.0, MAX_HEADER))
        transport = _Transport()
        connection.connection_made(transport)
        connection.data_received(wire[:split])
        connection.data_received(wire[split:])
        connection.connection_lost(None)
        return transport.written

    for split in (0, len(wire) // 3, len(wire) - 1):
        written = asyncio.run(feed(split))
        assert written.count(b"HTTP/1.1 200 OK") == len(paths)
        bodies = [part.split(b"\r\n\r\n", 1)[1] for part in written.split(b"HTTP/1.1 ")[1:]]
        assert bodies == [("/" + path).encode() for path in paths]
