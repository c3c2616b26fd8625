"""A start that fails closes exactly what it opened, in reverse order, and says why without a traceback;
a stop unwinds the same way. In process on the real components (ports, store, audit log, token client),
and through the real `watchword serve` for the failures an operator meets most."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from watchword import config
from watchword.compose.failures import StartupError
from watchword.compose.replica import prepare
from watchword.compose.worker import start_worker

COMPOSE_LOG = "watchword.compose"
# What a full start opens (audit to a file, metrics, OAuth HTTP and E4 on, no [[issuers]]), in order.
FULL_START = [
    "the store",
    "the audit log",
    "the usage flusher",
    "the outbound token client",
    "the change feed",
    "the metrics port",
    "the gRPC server",
    "the OAuth HTTP socket",
    "the OAuth HTTP endpoints",
    "the ext_authz HTTP socket",
    "the ext_authz HTTP front door",
    "the graceful drain",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Start:
    """One in-process start on concrete free ports, and what it opened and closed (from the debug log)."""

    def __init__(self, tmp_path: Path, caplog: pytest.LogCaptureFixture, **environ: str) -> None:
        self.ports = {name: free_port() for name in ("port", "http_port", "metrics_port", "e4_port")}
        self.settings = config.load(
            environ={
                "WATCHWORD_DATA_DIR": str(tmp_path / "data"),
                "WATCHWORD_PORT": str(self.ports["port"]),
                "WATCHWORD_HTTP_PORT": str(self.ports["http_port"]),
                "WATCHWORD_METRICS_PORT": str(self.ports["metrics_port"]),
                "WATCHWORD_EXT_AUTHZ_HTTP_PORT": str(self.ports["e4_port"]),
                "WATCHWORD_AUDIT_LOG_FILE": str(tmp_path / "audit.log"),
                "WATCHWORD_STORE_TIMEOUT_SECONDS": "1",
                **environ,
            }
        )
        self.caplog = caplog
        caplog.set_level(logging.DEBUG, logger=COMPOSE_LOG)

    def said(self, verb: str) -> list[str]:
        prefix = f"{verb} "
        return [
            record.getMessage().removeprefix(prefix)
            for record in self.caplog.records
            if record.name == COMPOSE_LOG and record.getMessage().startswith(prefix)
        ]

    @property
    def opened(self) -> list[str]:
        return self.said("opened")

    @property
    def closed(self) -> list[str]:
        return self.said("closing")

    async def fails(self, message: str) -> None:
        with pytest.raises(StartupError, match=message):
            await start_worker(self.settings, prepare, io.StringIO())

    def assert_everything_closed(self) -> None:
        """Closed in reverse order; no port listens, no task or audit writer is left."""
        assert self.closed == self.opened[::-1]
        assert [name for name, port in self.ports.items() if listening(port)] == []
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert not [thread for thread in threading.enumerate() if thread.name == "watchword-audit"]


@pytest.fixture
def http_clients(monkeypatch: pytest.MonkeyPatch) -> list[httpx.AsyncClient]:
    """Every httpx client created (without [[issuers]]: the outbound token client alone)."""
    made: list[httpx.AsyncClient] = []

    class Recorded(httpx.AsyncClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", Recorded)
    return made


def assert_token_client_closed(http_clients: list[httpx.AsyncClient]) -> None:
    assert len(http_clients) == 1
    assert http_clients[0].is_closed


async def test_a_stop_unwinds_everything_the_start_opened_drain_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, http_clients: list[httpx.AsyncClient]
) -> None:
    start = Start(tmp_path, caplog)
    running = await start_worker(start.settings, prepare, io.StringIO())
    assert start.opened == FULL_START
    assert all(listening(port) for port in start.ports.values())
    await running.stop()
    assert start.closed[0] == "the graceful drain"
    start.assert_everything_closed()
    assert_token_client_closed(http_clients)


# (setting, its key in Start.ports, the message, the last thing opened before the port is tried)
PORTS_IN_USE = [
    pytest.param(
        "WATCHWORD_HTTP_PORT",
        "http_port",
        "cannot serve OAuth HTTP on {where}: Address already in use",
        "the gRPC server",
        id="oauth-http-closes-the-started-grpc-server",
    ),
    pytest.param(
        "WATCHWORD_EXT_AUTHZ_HTTP_PORT",
        "e4_port",
        "cannot serve ext_authz HTTP on {where}: Address already in use",
        "the OAuth HTTP endpoints",
        id="e4-closes-the-oauth-http-endpoints-and-the-grpc-server",
    ),
    # grpc keeps a port it bound until its server has started and stopped: the metrics port is bound
    # first, so that its failure leaves no gRPC port listening.
    pytest.param(
        "WATCHWORD_METRICS_PORT",
        "metrics_port",
        "cannot serve metrics on {where}: Address already in use",
        "the change feed",
        id="metrics-leaves-no-grpc-port-bound",
    ),
    pytest.param(
        "WATCHWORD_PORT",
        "port",
        "cannot listen on {where}: the port is in use or the address is not local",
        "the metrics port",
        id="grpc-closes-the-metrics-port",
    ),
]


@pytest.mark.parametrize(("setting", "key", "message", "last_opened"), PORTS_IN_USE)
async def test_a_port_in_use_stops_the_start_and_closes_the_token_client_and_every_listener(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    http_clients: list[httpx.AsyncClient],
    setting: str,
    key: str,
    message: str,
    last_opened: str,
) -> None:
    with taken_port() as port:
        start = Start(tmp_path, caplog, **{setting: str(port)})
        del start.ports[key]  # the other program's
        await start.fails(re.escape(message.format(where=f"127.0.0.1:{port}")))
    assert start.opened == FULL_START[: FULL_START.index(last_opened) + 1]
    start.assert_everything_closed()
    assert_token_client_closed(http_clients)


async def test_an_unreachable_store_stops_the_start_with_where_it_is_and_no_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://watchword:s3cret@127.0.0.1:{free_port()}/watchword"
    start = Start(tmp_path, caplog, WATCHWORD_DATABASE_URL=url)
    with pytest.raises(StartupError) as failed:
        await start_worker(start.settings, prepare, io.StringIO())
    assert str(failed.value).startswith("cannot reach the store at postgresql://watchword:***@127.0.0.1:")
    assert "s3cret" not in str(failed.value)
    assert start.opened == ["the store"]
    start.assert_everything_closed()


async def test_a_bad_stored_signing_key_closes_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = Start(tmp_path, caplog)
    async with AsyncExitStack() as stack:
        await prepare(stack, start.settings)  # creates the signing key
    with sqlite3.connect(tmp_path / "data" / "watchword.db") as database:
        database.execute("UPDATE signing_keys SET algorithm = 'RS256' WHERE active")
    caplog.clear()
    await start.fails("cannot use the stored signing key: .* does not fit algorithm RS256")
    assert start.opened == ["the store"]
    start.assert_everything_closed()


# ---- through the real `watchword serve`


def serve(tmp_path: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WATCHWORD_")}
    env.update(
        {
            "WATCHWORD_DATA_DIR": str(tmp_path / "data"),
            "WATCHWORD_PORT": "0",
            "WATCHWORD_HTTP_PORT": "0",
            "WATCHWORD_METRICS_PORT": "0",
            **environ,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "watchword.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # it exits: nothing it started keeps it running
        check=False,
    )


def assert_refused_to_start(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2
    assert f"watchword: {message}" in done.stderr
    assert "Traceback" not in done.stderr
    assert "watchword listening" not in done.stdout


def test_serve_with_its_oauth_http_port_in_use_exits_with_a_message(tmp_path: Path) -> None:
    with taken_port() as port:
        done = serve(tmp_path, WATCHWORD_HTTP_PORT=str(port))
    assert_refused_to_start(done, f"cannot serve OAuth HTTP on 127.0.0.1:{port}: Address already in use")


def test_e4_serve_with_its_ext_authz_http_port_in_use_exits_with_a_message(tmp_path: Path) -> None:
    with taken_port() as port:
        done = serve(tmp_path, WATCHWORD_EXT_AUTHZ_HTTP_PORT=str(port))
    assert_refused_to_start(done, f"cannot serve ext_authz HTTP on 127.0.0.1:{port}: Address already in use")


def test_serve_with_an_unreachable_store_exits_with_a_message(tmp_path: Path) -> None:
    url = f"postgresql://watchword:s3cret@127.0.0.1:{free_port()}/watchword"
    done = serve(tmp_path, WATCHWORD_DATABASE_URL=url, WATCHWORD_STORE_TIMEOUT_SECONDS="1")
    assert_refused_to_start(done, "cannot reach the store at postgresql://watchword:***@127.0.0.1:")
    assert "s3cret" not in done.stderr
