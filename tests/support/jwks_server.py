"""A real OIDC issuer for C1 tests: discovery and JWKS over HTTP on 127.0.0.1, keys that rotate mid-test.

`with JwksServer() as idp:` serves `/.well-known/openid-configuration` and `/jwks` from a stdlib
ThreadingHTTPServer on a free port. Keys are made with `cryptography`; tokens are signed with PyJWT's
algorithms (signing only: verification is Watchword's). The server can go down (503, a dropped
connection, garbage), answer slowly, redirect, and counts the requests it serves.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"
_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private_key: Any

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    def public_jwk(self, *, with_alg: bool = True) -> dict[str, Any]:
        if self.algorithm.startswith(("RS", "PS")):
            jwk = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        elif self.algorithm.startswith("ES"):
            jwk = ECAlgorithm.to_jwk(self.public_key, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig"})
        if with_alg:
            jwk["alg"] = self.algorithm
        return jwk


def generate_key(algorithm: str, kid: str) -> SigningKey:
    if algorithm.startswith(("RS", "PS")):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm in _CURVES:
        private = ec.generate_private_key(_CURVES[algorithm])
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"no key type for {algorithm}")
    return SigningKey(kid=kid, algorithm=algorithm, private_key=private)


@dataclass
class _State:
    """What the server answers; changed by the test thread, read by the server threads."""

    keys: list[SigningKey] = field(default_factory=list)
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)
    discovery_issuer: str | None = None  # None: the server's own issuer
    mode: Literal["up", "503", "drop", "garbage"] = "up"
    delay_seconds: float = 0.0
    cache_control: str | None = None
    jwks_redirect: str | None = None
    jwks_padding_bytes: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.requests[self.path] += 1
            mode, delay = state.mode, state.delay_seconds
        if delay:
            time.sleep(delay)
        if mode == "drop":
            self.close_connection = True  # no answer at all
            return
        if mode == "503":
            self._send(503, b'{"error":"unavailable"}')
            return
        if mode == "garbage":
            self._send(200, b"<html>not json</html>")
            return
        if self.path == DISCOVERY_PATH:
            self._send_json(self.server.owner.discovery_document())
        elif self.path == JWKS_PATH and state.jwks_redirect:
            self.send_response(302)
            self.send_header("Location", state.jwks_redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path in (JWKS_PATH, JWKS_PATH + "/moved"):
            self._send_json(self.server.owner.jwks_document(), cache_control=state.cache_control)
        else:
            self._send(404, b"{}")

    def _send_json(self, document: dict[str, Any], cache_control: str | None = None) -> None:
        body = json.dumps(document).encode()
        padding = self.server.state.jwks_padding_bytes
        if padding and self.path.startswith(JWKS_PATH):
            body = body[:-1] + b', "padding": "' + b"x" * padding + b'"}'
        self._send(200, body, cache_control)

    def _send(self, status: int, body: bytes, cache_control: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if cache_control:
            self.send_header("Cache-Control", cache_control)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State
    owner: JwksServer


class JwksServer:
    """A Keycloak-like issuer on 127.0.0.1. `issuer` is `<base>/realms/test` unless given."""

    def __init__(self, *, algorithms: tuple[str, ...] = ("RS256",), issuer: str | None = None) -> None:
        self.state = _State()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._server.owner = self
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = issuer or f"{self.base_url}/realms/test"
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="jwks-server", daemon=True
        )
        self._counter = 0
        for algorithm in algorithms:
            self.add_key(algorithm)

    # ---- lifecycle ----

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ---- what it serves ----

    @property
    def discovery_url(self) -> str:
        return self.base_url + DISCOVERY_PATH

    @property
    def jwks_uri(self) -> str:
        return self.base_url + JWKS_PATH

    def discovery_document(self) -> dict[str, Any]:
        with self.state.lock:
            issuer = self.state.discovery_issuer or self.issuer
        return {
            "issuer": issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.base_url + "/auth",
            "token_endpoint": self.base_url + "/token",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }

    def jwks_document(self) -> dict[str, Any]:
        with self.state.lock:
            keys = [key.public_jwk() for key in self.state.keys] + list(self.state.extra_jwks)
        return {"keys": keys}

    # ---- changing it mid-test ----

    def _next_kid(self, algorithm: str) -> str:
        # The port keeps kids of two servers in one test apart (a shared kid is tested on purpose).
        self._counter += 1
        return f"key-{self._server.server_address[1]}-{self._counter}-{algorithm.lower()}"

    def add_key(self, algorithm: str = "RS256", kid: str | None = None) -> SigningKey:
        key = generate_key(algorithm, kid or self._next_kid(algorithm))
        with self.state.lock:
            self.state.keys.append(key)
        return key

    def drop_key(self, kid: str) -> None:
        with self.state.lock:
            self.state.keys = [key for key in self.state.keys if key.kid != kid]

    def rotate(self, algorithm: str = "RS256") -> SigningKey:
        """A new key replaces every old one (Keycloak after the old key is disabled)."""
        new = generate_key(algorithm, self._next_kid(algorithm))
        with self.state.lock:
            self.state.keys = [new]
        return new

    def set(self, **changes: Any) -> None:
        """Change what the server answers: mode, delay_seconds, discovery_issuer, cache_control, ..."""
        with self.state.lock:
            for name, value in changes.items():
                if not hasattr(self.state, name):
                    raise AttributeError(name)
                setattr(self.state, name, value)

    @property
    def keys(self) -> list[SigningKey]:
        with self.state.lock:
            return list(self.state.keys)

    # ---- counting ----

    @property
    def jwks_requests(self) -> int:
        with self.state.lock:
            return self.state.requests[JWKS_PATH]

    @property
    def discovery_requests(self) -> int:
        with self.state.lock:
            return self.state.requests[DISCOVERY_PATH]

    # ---- tokens ----

    def sign(
        self,
        claims: dict[str, Any],
        key: SigningKey | None = None,
        *,
        headers: dict[str, Any] | None = None,
        with_kid: bool = True,
    ) -> str:
        """A compact JWS of `claims`, signed with PyJWT's algorithms but without PyJWT's claim checks, so
        tests can also send what a careless or hostile issuer would (e.g. a non-string `iss`). A header
        `alg` given in `headers` signs with that algorithm."""
        key = key or self.keys[0]
        header: dict[str, Any] = {"alg": key.algorithm, "typ": "JWT"}
        if with_kid:
            header["kid"] = key.kid
        header.update(headers or {})
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signer = get_default_algorithms()[header["alg"]]
        signature = signer.sign(signing_input.encode(), key.private_key)
        return f"{signing_input}.{_b64url(signature)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
