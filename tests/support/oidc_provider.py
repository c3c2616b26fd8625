"""A real OAuth 2.0 token server for the tests: npm's `oidc-provider`, run by node on 127.0.0.1.

`tests/oidc_provider/server.mjs` wraps it (client credentials grant, introspection, RFC 8707 resource
indicators); its package is pinned in `tests/oidc_provider/package.json` and installed by
`npm ci --prefix tests/oidc_provider` (which .ci/run does). A missing node or package is an error, never
a skip: tests against a real token server must not quietly stop running.

    with OidcProvider([client_credentials_client("c", "client_secret_post", client_secret="s")]) as provider:
        provider.token_endpoint, provider.issuer, provider.introspect(token, "c", "s")
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "oidc_provider"
SERVER_SCRIPT = PROVIDER_DIR / "server.mjs"
INSTALL_HINT = "run `npm ci --prefix tests/oidc_provider` (which .ci/run does)"
START_TIMEOUT = 20.0
HOST = "127.0.0.1"
_LISTENING = re.compile(r"oidc-provider listening on (http://\S+)")


def free_port() -> int:
    """A port nothing listens on now (for a server whose URL must be known before it starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def client_credentials_client(client_id: str, auth_method: str, **metadata: Any) -> dict[str, Any]:
    """RFC 7591 metadata of a client that may only use the client credentials grant."""
    return {
        "client_id": client_id,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": auth_method,
        **metadata,
    }


def _check_installation() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "node is not on PATH: the O3/O4 tests run npm's oidc-provider as their token server. "
            f"Install Node.js 20 or newer, then {INSTALL_HINT}."
        )
    wanted = json.loads((PROVIDER_DIR / "package.json").read_text())["dependencies"]["oidc-provider"]
    installed_manifest = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
    if not installed_manifest.is_file():
        raise RuntimeError(f"the npm package oidc-provider {wanted} is not installed: {INSTALL_HINT}.")
    installed = json.loads(installed_manifest.read_text())["version"]
    if installed != wanted:
        raise RuntimeError(
            f"oidc-provider {installed} is installed but package.json pins {wanted}: {INSTALL_HINT}."
        )
    return node


class OidcProvider:
    """oidc-provider in a node subprocess with the given clients; `port` 0 picks a free one.

    After start: `issuer`, `token_endpoint`, `introspection_endpoint`, `jwks_uri` (from its discovery
    document) and `output`: its log, with startup warnings and a line per token grant or refusal giving
    oidc-provider's reason. The lines are also printed, so a failing test's captured output shows what
    oidc-provider made of its requests."""

    def __init__(
        self,
        clients: list[dict[str, Any]],
        *,
        port: int = 0,
        scopes: tuple[str, ...] = (),
        resource_servers: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.config = {
            "port": port,
            "clients": clients,
            "scopes": list(scopes),
            "resource_servers": resource_servers or {},
        }
        self.issuer = ""
        self.token_endpoint = ""
        self.introspection_endpoint = ""
        self.jwks_uri = ""
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._listening = threading.Event()

    def _read_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            print("oidc-provider:", line, end="")  # in pytest's captured output of the test it concerns
            if match := _LISTENING.search(line):
                self.issuer = match.group(1)
                self._listening.set()

    def _fail(self, why: str) -> RuntimeError:
        self.stop()
        return RuntimeError(f"oidc-provider {why}:\n" + "".join(self.output))

    def start(self) -> Self:
        node = _check_installation()
        self._workdir = tempfile.TemporaryDirectory(prefix="oidc-provider-")
        config_path = Path(self._workdir.name) / "config.json"
        config_path.write_text(json.dumps(self.config))
        self.process = subprocess.Popen(
            [node, str(SERVER_SCRIPT), str(config_path)],
            cwd=PROVIDER_DIR,
            stdin=subprocess.PIPE,  # closed by stop(), or by the OS if the tests die: the server then exits
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening.wait(0.05):
            if self.process.poll() is not None:
                raise self._fail(f"exited with code {self.process.returncode} before listening")
            if time.monotonic() > deadline:
                raise self._fail(f"did not listen within {START_TIMEOUT:g} s")
        try:
            discovery = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise self._fail(f"answered no discovery document ({exc!r})") from None
        self.token_endpoint = discovery["token_endpoint"]
        self.introspection_endpoint = discovery["introspection_endpoint"]
        self.jwks_uri = discovery["jwks_uri"]
        return self

    def introspect(self, token: str, client_id: str, client_secret: str) -> dict[str, Any]:
        """RFC 7662 introspection of `token`, authenticated as a client_secret_post client."""
        form = {"token": token, "client_id": client_id, "client_secret": client_secret}
        response = httpx.post(self.introspection_endpoint, data=form, timeout=5)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def jwks(self) -> dict[str, Any]:
        """The public keys oidc-provider signs JWT access tokens with."""
        keys: dict[str, Any] = httpx.get(self.jwks_uri, timeout=5).raise_for_status().json()
        return keys

    def logged(self, text: str, timeout: float = 5.0) -> bool:
        """Whether a line of its output contains `text`, waiting a little: the output is read by a thread,
        so a line about a request may arrive after the request's answer."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.output)):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
