"""Start the real `watchword serve` in a subprocess on a free loopback port, as an operator would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc

from watchword.v1 import admin_pb2_grpc, auth_pb2_grpc

_LISTENING = re.compile(r"watchword listening on ([\d.]+):(\d+)")
_HTTP_LISTENING = re.compile(r"watchword http listening on ([\d.]+):(\d+)")
_METRICS_LISTENING = re.compile(r"watchword metrics listening on ([\d.]+):(\d+)")
_EXT_AUTHZ_HTTP_LISTENING = re.compile(r"watchword ext_authz http listening on ([\d.]+):(\d+)")
_ADMIN_TOKEN = re.compile(r"WATCHWORD_ADMIN_TOKEN=(wwad_\S+)")
START_TIMEOUT = 60.0


class WatchwordProcess:
    """`with WatchwordProcess(tmp_path) as ww:` gives `ww.port`, `ww.admin_token`, stubs and the output."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.preexec_fn = preexec_fn  # run in the child before the server starts (e.g. setrlimit)
        self.extra_env = env or {}
        self.args = args or []
        self.port = 0
        self.http_port = 0
        self.metrics_port = 0
        self.ext_authz_http_port = 0  # E4, when WATCHWORD_EXT_AUTHZ_HTTP_PORT is set
        self.admin_token = ""
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._listening = threading.Event()
        self._channel: grpc.Channel | None = None

    def _read_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if token := _ADMIN_TOKEN.search(line):
                self.admin_token = token.group(1)
            if http := _HTTP_LISTENING.search(line):
                self.http_port = int(http.group(2))
            if metrics := _METRICS_LISTENING.search(line):
                self.metrics_port = int(metrics.group(2))
            if ext_authz := _EXT_AUTHZ_HTTP_LISTENING.search(line):
                self.ext_authz_http_port = int(ext_authz.group(2))
            if match := _LISTENING.search(line):
                self.port = int(match.group(2))
                self._listening.set()

    def start(self) -> Self:
        env = {key: value for key, value in os.environ.items() if not key.startswith("WATCHWORD_")}
        env.update(
            {
                "WATCHWORD_PORT": "0",
                "WATCHWORD_HTTP_PORT": "0",
                "WATCHWORD_METRICS_PORT": "0",
                "WATCHWORD_DATA_DIR": str(self.data_dir),
                **self.extra_env,
            }
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "watchword.cli", *self.args, "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=self.preexec_fn,
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("watchword did not start:\n" + "".join(self.output))
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return self._channel

    def auth(self) -> auth_pb2_grpc.AuthServiceStub:
        return auth_pb2_grpc.AuthServiceStub(self.channel())

    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel())

    @property
    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.admin_token}"),)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
