"""A scripted AuthService on 127.0.0.1 for the client's retry and deadline tests (E2).

A real grpc server in this process: each Authenticate call takes the next scripted status (e.g.
UNAVAILABLE twice, then OK) and may be held for `delay` seconds first. Every call is recorded with its
arrival time, so tests can count attempts and measure the pauses between them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import grpc

from watchword.v1 import auth_pb2, auth_pb2_grpc, common_pb2


@dataclass
class _Script:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: deque[grpc.StatusCode] = field(default_factory=deque)
    delay: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)


class _Servicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, script: _Script) -> None:
        self.script = script

    def Authenticate(self, request: auth_pb2.AuthenticateRequest, context: grpc.ServicerContext) -> object:
        with self.script.lock:
            self.script.arrivals.append(time.monotonic())
            self.script.metadata.append(dict(context.invocation_metadata()))
            status = self.script.statuses.popleft() if self.script.statuses else grpc.StatusCode.OK
            delay = self.script.delay
        if delay:
            time.sleep(delay)
        if status != grpc.StatusCode.OK:
            context.abort(status, f"scripted {status.name}")
        principal = common_pb2.Principal(id="scripted", kind=common_pb2.CREDENTIAL_KIND_STATIC_TOKEN)
        return auth_pb2.AuthenticateResponse(principal=principal)


class FakeWatchword:
    """`with FakeWatchword() as fake: fake.fail(grpc.StatusCode.UNAVAILABLE, times=2)`; `fake.address`."""

    def __init__(self) -> None:
        self.script = _Script()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        auth_pb2_grpc.add_AuthServiceServicer_to_server(_Servicer(self.script), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def fail(self, code: grpc.StatusCode, times: int) -> None:
        with self.script.lock:
            self.script.statuses.extend([code] * times)

    def hold(self, seconds: float) -> None:
        with self.script.lock:
            self.script.delay = seconds

    @property
    def arrivals(self) -> list[float]:
        with self.script.lock:
            return list(self.script.arrivals)

    @property
    def metadata(self) -> list[dict[str, str]]:
        with self.script.lock:
            return list(self.script.metadata)

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.stop(grace=0).wait(5)
