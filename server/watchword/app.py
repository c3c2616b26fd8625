"""Running the server as one process: start (prepare the replica, compose the server from its builders
in `watchword.compose`), say where it listens, serve until SIGTERM or SIGINT, then drain gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from typing import TextIO

from watchword import heap, listeners
from watchword.compose.failures import StartupError
from watchword.compose.replica import prepare
from watchword.compose.worker import RunningServer, start_worker
from watchword.config import Settings

__all__ = ["Listening", "RunningServer", "StartupError", "announce", "serve", "show_admin_token", "start"]

log = logging.getLogger("watchword")


async def start(settings: Settings, out: TextIO = sys.stdout) -> RunningServer:
    """One process serving everything (workers = 1): prepare, start, say where it listens."""
    running = await start_worker(settings, prepare, out)
    # Before the start is announced: whoever waits for that line may signal the process at once.
    log.debug("objects kept out of garbage collection: %s", heap.freeze_startup_objects())
    announce(settings, Listening.of(running), out, running.admin_token)
    return running


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain gracefully."""
    log.info("open-file limit: %s", listeners.raise_open_file_limit())
    running = await start(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stopping.wait()
    log.info("shutting down: draining in-flight calls for up to %ss", settings.shutdown_grace_seconds)
    await running.stop()


@dataclass(frozen=True)
class Listening:
    """Where a started replica listens (None: that listener is off)."""

    port: int
    http_port: int | None = None
    metrics_port: int | None = None
    ext_authz_http_port: int | None = None

    @classmethod
    def of(cls, running: RunningServer) -> Listening:
        http = running.http.port if running.http is not None else None
        metrics = running.metrics_server.port if running.metrics_server is not None else None
        ext_authz_http = running.ext_authz_http.port if running.ext_authz_http is not None else None
        return cls(running.port, http, metrics, ext_authz_http)


def show_admin_token(admin_token: str, out: TextIO) -> None:
    # Shown once, on stdout (never in the logs): the only way to reach the admin service at first.
    print(
        "Watchword created its first admin token. It is shown once; store it now:\n"
        f"  WATCHWORD_ADMIN_TOKEN={admin_token}",
        file=out,
        flush=True,
    )


def announce(settings: Settings, listening: Listening, out: TextIO, admin_token: str | None) -> None:
    """The start's lines on stdout: the bootstrap admin token once, then where each listener is."""
    if admin_token is not None:
        show_admin_token(admin_token, out)
    scheme = "tls" if settings.tls_cert_file else "plaintext"
    if listening.http_port is not None:
        print(f"watchword http listening on {settings.http_host}:{listening.http_port}", file=out, flush=True)
    if listening.ext_authz_http_port is not None:
        where = f"{settings.ext_authz_http_host}:{listening.ext_authz_http_port}"
        print(f"watchword ext_authz http listening on {where}", file=out, flush=True)
    if listening.metrics_port is not None:
        print(
            f"watchword metrics listening on {settings.metrics_host}:{listening.metrics_port}",
            file=out,
            flush=True,
        )
    # Last: tools and tests wait for this line to know that everything is up.
    print(f"watchword listening on {settings.host}:{listening.port} ({scheme})", file=out, flush=True)
