"""A webhook receiver on 127.0.0.1 for the E2 signer and delivery-worker tests.

It checks what a customer's endpoint would: the Standard Webhooks signature (with the official
`standardwebhooks` package, when given the signing secret) and the `Authorization` header (when given
the bearer tokens it accepts, or the ones it rejects). It answers 204 when every check passes, 401
otherwise, and records each delivery (headers, body, outcome).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    problem: str


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    signing_secret: str | None = None
    rejected_tokens: set[str] = field(default_factory=set)
    require_bearer: bool = False
    deliveries: list[Delivery] = field(default_factory=list)


def _problem(state: _State, headers: dict[str, str], body: bytes) -> str:
    if state.signing_secret is not None:
        try:
            Webhook(state.signing_secret).verify(body, headers)
        except (WebhookVerificationError, ValueError) as error:  # ValueError: a body that is not JSON
            return f"signature: {error}"
    authorization = headers.get("authorization", "")
    if state.require_bearer and not authorization.startswith("Bearer "):
        return "no bearer token"
    if authorization.removeprefix("Bearer ") in state.rejected_tokens:
        return "token rejected"
    return ""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(min(length, MAX_BODY))
        headers = {name.lower(): value for name, value in self.headers.items()}
        state = self.server.state
        with state.lock:
            problem = _problem(state, headers, body)
            status = 401 if problem else 204
            state.deliveries.append(Delivery(self.path, headers, body, status, problem))
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class WebhookReceiver:
    """`with WebhookReceiver(signing_secret=...) as receiver:` then post to `receiver.url`."""

    def __init__(self, *, signing_secret: str | None = None, require_bearer: bool = False) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(signing_secret=signing_secret, require_bearer=require_bearer)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def reject(self, token: str) -> None:
        with self._server.state.lock:
            self._server.state.rejected_tokens.add(token)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._server.state.lock:
            return list(self._server.state.deliveries)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
