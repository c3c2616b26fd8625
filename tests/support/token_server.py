"""A small OAuth2 token server for the O3/O4 tests: client credentials grant on 127.0.0.1, under control.

`with TokenServer() as server:` serves POST on any path from a stdlib ThreadingHTTPServer on a free port.
It checks the client authentication of every request on its own, independently of Watchword's code:

- client_secret_basic: `Authorization: Basic`, both halves form-decoded (RFC 6749 §2.3.1);
- client_secret_post: `client_id` and `client_secret` in the form;
- client_secret_jwt / private_key_jwt: `client_assertion_type` and a `client_assertion` verified with
  PyJWT against the registered secret or public key: exactly the claims iss, sub, aud, iat, exp, jti,
  `iss` = `sub` = client id, `aud` = the audience registered for the client, `exp` - `iat` == 300, a
  `jti` never seen before, and the `kid` header when one is expected.

A request that uses no method or more than one, or fails its check, is answered 401 invalid_client, as a
real server would; `requests` records what was seen (headers, form, the method recognised, the claims,
the problem). Tokens are `{"access_token", "token_type", "expires_in"}` with a configurable expires_in
(None leaves it out). Scripted replies (`then(...)`, used once each, in order) and a persistent one
(`always(...)`) answer 500s, 429s, OAuth errors, bad JSON, huge bodies, redirects or a dropped connection
instead. `delay_seconds` slows every answer; the wait ends early when the server stops. With `tls=`, the
server speaks HTTPS and records the SNI name of each handshake.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote_plus

import jwt

from support.certificates import TlsFiles, self_signed

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_CLAIMS = frozenset({"iss", "sub", "aud", "iat", "exp", "jti"})
MAX_REQUEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Client:
    """A registered client. `secret` for the three secret methods; `public_key` for private_key_jwt."""

    client_id: str
    secret: str = ""
    public_key: Any = None
    algorithm: str = "HS256"  # of the assertion, for the JWT methods
    kid: str | None = None  # expected `kid` header of a private_key_jwt assertion
    audience: str | tuple[str, ...] = ""  # expected `aud` of an assertion (one of them)


@dataclass(frozen=True)
class Reply:
    """A canned answer instead of a token."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    drop: bool = False  # close the connection without any answer

    @classmethod
    def json(cls, status: int, document: object, *headers: tuple[str, str]) -> Reply:
        return cls(status, json.dumps(document).encode(), (("Content-Type", "application/json"), *headers))

    @classmethod
    def oauth_error(cls, status: int, code: str, description: str | None = None) -> Reply:
        document = {"error": code} | ({"error_description": description} if description else {})
        return cls.json(status, document)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        return cls(status, b"", (("Location", location),))

    @classmethod
    def huge(cls, size: int, *, send_length: bool = True) -> Reply:
        body = b'{"access_token": "' + b"x" * size + b'", "token_type": "Bearer"}'
        return cls(200, body, send_length=send_length)

    @classmethod
    def dropped(cls) -> Reply:
        return cls(drop=True)


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]  # lower-case names
    form: dict[str, str]
    form_pairs: list[tuple[str, str]]
    method: str | None = None  # the client authentication method recognised
    client_id: str | None = None  # authenticated client, None when authentication failed
    assertion_header: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    problem: str | None = None  # why authentication or the request failed


@dataclass
class _State:
    clients: dict[str, Client] = field(default_factory=dict)
    expires_in: float | int | str | None = 3600
    token_type: str = "Bearer"
    delay_seconds: float = 0.0
    scripted: deque[Reply] = field(default_factory=deque)
    persistent: Reply | None = None
    requests: list[Seen] = field(default_factory=list)
    jtis: set[str] = field(default_factory=set)
    sni_names: list[str | None] = field(default_factory=list)
    issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_REQUEST_BYTES))
        seen = _parse(self.path, dict((k.lower(), v) for k, v in self.headers.items()), body)
        with state.lock:
            state.requests.append(seen)
            reply = state.scripted.popleft() if state.scripted else state.persistent
            delay = state.delay_seconds
            _authenticate(seen, state)
        if delay:
            state.stopping.wait(delay)
        if reply is not None:
            self._reply(reply)
            return
        if seen.problem is not None:
            self._reply(Reply.oauth_error(400 if seen.method == "none" else 401, "invalid_client"))
        elif seen.form.get("grant_type") != "client_credentials":
            seen.problem = "grant_type is not client_credentials"
            self._reply(Reply.oauth_error(400, "unsupported_grant_type"))
        else:
            self._reply(Reply.json(200, self._token(), ("Cache-Control", "no-store")))

    def _token(self) -> dict[str, object]:
        state = self.server.state
        with state.lock:
            state.issued += 1
            document: dict[str, object] = {
                "access_token": f"at-{state.issued}-{secrets.token_hex(4)}",
                "token_type": state.token_type,
            }
            if state.expires_in is not None:
                document["expires_in"] = state.expires_in
        return document

    def _reply(self, reply: Reply) -> None:
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.send_length:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


def _parse(path: str, headers: dict[str, str], body: bytes) -> Seen:
    seen = Seen(path=path, headers=headers, form={}, form_pairs=[])
    if headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        seen.problem = "the body is not application/x-www-form-urlencoded"
        return seen
    try:
        seen.form_pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        seen.problem = "the form cannot be parsed"
        return seen
    seen.form = dict(seen.form_pairs)
    if len(seen.form) != len(seen.form_pairs):
        seen.problem = "a form field appears twice"  # RFC 6749 §3.2
    return seen


def _authenticate(seen: Seen, state: _State) -> None:
    """Which client authentication the request uses, and whether it holds. Sets seen.method and, on
    success, seen.client_id; otherwise seen.problem."""
    authorization = seen.headers.get("authorization", "")
    methods = []
    if authorization.startswith("Basic "):
        methods.append("client_secret_basic")
    if "client_secret" in seen.form:
        methods.append("client_secret_post")
    if "client_assertion" in seen.form or "client_assertion_type" in seen.form:
        methods.append("jwt")
    if len(methods) != 1:
        seen.method = "none" if not methods else "several"
        seen.problem = seen.problem or f"{len(methods)} client authentication methods"
        return
    if seen.problem:
        return
    method = methods[0]
    if method == "client_secret_basic":
        seen.method = method
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode("ascii")
            encoded_id, encoded_secret = decoded.split(":", 1)
        except ValueError:
            seen.problem = "malformed Basic credentials"
            return
        _check_secret(seen, state, unquote_plus(encoded_id), unquote_plus(encoded_secret))
    elif method == "client_secret_post":
        seen.method = method
        _check_secret(seen, state, seen.form.get("client_id", ""), seen.form["client_secret"])
    else:
        _check_assertion(seen, state)


def _check_secret(seen: Seen, state: _State, client_id: str, secret: str) -> None:
    client = state.clients.get(client_id)
    if (
        client is None
        or not client.secret
        or not secrets.compare_digest(client.secret.encode(), secret.encode())
    ):
        seen.problem = "unknown client or wrong secret"
        return
    seen.client_id = client_id


def _check_assertion(seen: Seen, state: _State) -> None:
    if seen.form.get("client_assertion_type") != ASSERTION_TYPE:
        seen.method, seen.problem = "jwt", "wrong client_assertion_type"
        return
    assertion = seen.form.get("client_assertion", "")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        seen.method, seen.problem = "jwt", "the assertion is not a JWT"
        return
    seen.assertion_header = header
    seen.method = "client_secret_jwt" if header.get("alg") == "HS256" else "private_key_jwt"
    client = state.clients.get(str(unverified.get("iss")))
    if client is None:
        seen.problem = "unknown client"
        return
    key = client.secret if seen.method == "client_secret_jwt" else client.public_key
    if key is None or key == "":
        seen.problem = f"the client is not registered for {seen.method}"
        return
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[client.algorithm],
            audience=list(_audiences(client)),
            issuer=client.client_id,
            options={"require": sorted(ASSERTION_CLAIMS)},
            leeway=5,
        )
    except jwt.PyJWTError as exc:
        seen.problem = f"the assertion does not verify: {exc}"
        return
    seen.claims = claims
    if set(claims) != ASSERTION_CLAIMS:
        seen.problem = f"the assertion carries the claims {sorted(claims)}"
    elif claims["sub"] != client.client_id or claims["aud"] not in _audiences(client):
        seen.problem = "sub or aud is wrong"
    elif claims["exp"] - claims["iat"] != 300:
        seen.problem = "exp - iat is not 300"
    elif claims["jti"] in state.jtis:
        seen.problem = "the jti was used before"
    elif "client_id" in seen.form and seen.form["client_id"] != client.client_id:
        seen.problem = "client_id and iss differ"
    elif client.kid is not None and header.get("kid") != client.kid:
        seen.problem = "wrong kid"
    if seen.problem is None:
        state.jtis.add(claims["jti"])
        seen.client_id = client.client_id


def _audiences(client: Client) -> tuple[str, ...]:
    return (client.audience,) if isinstance(client.audience, str) else client.audience


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up (timeouts, size bounds) leave broken pipes behind: expected here


class TokenServer:
    """The token server; `token_url` is `<base>/oauth/token` (any path answers alike)."""

    def __init__(self, *, tls: TlsFiles | None = None) -> None:
        self.state = _State()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.port = self._server.server_address[1]
        scheme = "http"
        if tls is not None:
            scheme = "https"
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.certificate, tls.private_key)
            context.sni_callback = self._record_sni
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        self.token_url = self.base_url + "/oauth/token"
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="token-server",
            daemon=True,
        )

    def _record_sni(self, _socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        with self.state.lock:
            self.state.sni_names.append(name)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.state.stopping.set()  # ends slow answers at once
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ---- configuring ----

    def register(self, client: Client) -> Client:
        with self.state.lock:
            self.state.clients[client.client_id] = client
        return client

    def set(self, **changes: Any) -> None:
        """Change expires_in, token_type or delay_seconds."""
        with self.state.lock:
            for name, value in changes.items():
                if name not in ("expires_in", "token_type", "delay_seconds"):
                    raise AttributeError(name)
                setattr(self.state, name, value)

    def then(self, *replies: Reply) -> None:
        """Answer the next requests with these, one each, before anything else."""
        with self.state.lock:
            self.state.scripted.extend(replies)

    def always(self, reply: Reply | None) -> None:
        """Answer every request with `reply` (None: issue tokens again)."""
        with self.state.lock:
            self.state.persistent = reply

    # ---- observing ----

    @property
    def requests(self) -> list[Seen]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def request_count(self) -> int:
        with self.state.lock:
            return len(self.state.requests)

    @property
    def sni_names(self) -> list[str | None]:
        with self.state.lock:
            return list(self.state.sni_names)


def make_certificate(hostname: str, directory: Path) -> TlsFiles:
    """A self-signed certificate for `hostname` only (no IP address in it)."""
    return self_signed(directory, dns=(hostname,), common_name=hostname, stem="token-server")
