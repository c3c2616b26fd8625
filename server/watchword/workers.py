"""Worker processes: one replica, N processes serving the same ports, so that it uses every core.

The supervisor does once what a replica does once (`compose.replica.prepare`: data directory, master
key, schema, signing key, bootstrap admin token), reserves the ports (concrete ones for port 0) and serves
the replica's metrics; it runs no gRPC itself. Each worker is a spawned process (never forked: grpc must
not be initialised before a fork) that runs `compose.worker.start_worker` with SO_REUSEPORT listeners on
those ports,
its own caches and its own change feed (`invalidation.for_replica`). A worker that dies is restarted
with a bounded backoff and counted; SIGTERM or SIGINT drains every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TextIO

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from watchword import app, heap, listeners
from watchword.compose.failures import StartupError, cannot_serve
from watchword.compose.replica import attach, prepare
from watchword.compose.worker import start_worker
from watchword.config import Settings
from watchword.observe import logging_setup
from watchword.observe import metrics as observe_metrics

log = logging.getLogger("watchword.workers")

# A restart waits this long after a worker died, doubling per quick death up to the ceiling; a worker
# that served for STABLE_SECONDS starts the backoff afresh.
RESTART_BACKOFF_SECONDS = 0.5
MAX_RESTART_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0
# Past shutdown_grace_seconds, this long for the workers to finish closing before they are killed.
STOP_MARGIN_SECONDS = 5.0
# How long one worker may take to start (imports, store, JWKS) before the start fails.
START_TIMEOUT_SECONDS = 60.0
# The supervisor reads each worker's metrics over loopback when Prometheus scrapes it.
SCRAPE_TIMEOUT_SECONDS = 2.0
# Each listener the workers share: (host setting, port setting, setting that turns it on or "").
SHARED_LISTENERS = (
    ("host", "port", ""),
    ("http_host", "http_port", "http_enabled"),
    ("ext_authz_http_host", "ext_authz_http_port", ""),  # E4, when configured
)


@dataclass(frozen=True)
class Ready:
    """A worker's message once it serves: who it is and where its own metrics are (None: disabled)."""

    pid: int
    metrics_port: int | None


@dataclass(frozen=True)
class Failed:
    """A worker's message when it cannot start (the message says what to fix)."""

    message: str


# ---- in the worker process ----


def worker_main(index: int, settings: Settings, connection: Connection) -> None:
    """The spawned worker's entry point: serve until SIGTERM or SIGINT (or the supervisor is gone)."""
    logging_setup.configure(settings.log_level, settings.effective_log_format, worker=index)
    listeners.raise_open_file_limit()
    try:
        asyncio.run(_serve_worker(settings, connection))
    except StartupError as exc:
        connection.send(Failed(str(exc)))
        sys.exit(2)


async def _serve_worker(settings: Settings, connection: Connection) -> None:
    running = await start_worker(settings, attach, sys.stdout, shared_ports=True)
    heap.freeze_startup_objects()
    metrics_port = running.metrics_server.port if running.metrics_server is not None else None
    connection.send(Ready(os.getpid(), metrics_port))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    # The supervisor's end of the pipe closes when it dies (even by SIGKILL): drain, do not linger.
    loop.add_reader(connection.fileno(), stopping.set)
    await stopping.wait()
    log.info("worker draining in-flight calls for up to %ss", settings.shutdown_grace_seconds)
    await running.stop()


# ---- in the supervisor ----


def worker_settings(settings: Settings, ports: dict[str, int]) -> Settings:
    """A worker's settings: the reserved ports, and its own metrics on a loopback port of its own (the
    supervisor serves the replica's metrics port and reads each worker's there)."""
    return settings.model_copy(update={**ports, "metrics_host": "127.0.0.1", "metrics_port": 0})


def shared_listeners(settings: Settings) -> Iterator[tuple[str, str]]:
    """(host setting, port setting) of each listener this configuration turns on."""
    for host_name, port_name, enabled_name in SHARED_LISTENERS:
        if port_name not in Settings.model_fields or getattr(settings, port_name) is None:
            continue
        if enabled_name and not getattr(settings, enabled_name):
            continue
        yield host_name, port_name


def reserve_ports(settings: Settings) -> dict[str, socket.socket]:
    """Bind every shared port (SO_REUSEPORT, not listening) before any worker starts: a port in use
    stops the start, and port 0 becomes one concrete port that every worker listens on."""
    reserved: dict[str, socket.socket] = {}
    try:
        for host_name, port_name in shared_listeners(settings):
            host, port = getattr(settings, host_name), getattr(settings, port_name)
            try:
                reserved[port_name] = listeners.reserve_port(host, port)
            except OSError as exc:
                raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except BaseException:
        close_all(reserved.values())
        raise
    return reserved


def close_all(sockets: Iterable[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


async def readable(fd: int) -> None:
    """Wait until `fd` can be read (a message, an end of file, or a process's sentinel)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


@dataclass
class Worker:
    """One worker slot: its index, the process in it now and what that process reported."""

    index: int
    process: BaseProcess | None = None
    connection: Connection | None = None
    ready: Ready | None = None
    started_at: float = 0.0
    backoff: float = RESTART_BACKOFF_SECONDS


class Pool:
    """The worker processes of one replica, kept running until `stop()`."""

    def __init__(self, settings: Settings, count: int, restarts: Counter | None = None) -> None:
        self.settings = settings
        self.count = count
        self.restarts = restarts
        self.context = multiprocessing.get_context("spawn")
        self.workers = [Worker(index) for index in range(count)]
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def spawn(self, worker: Worker) -> None:
        if worker.connection is not None:
            worker.connection.close()  # the previous process's pipe
        ours, theirs = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=worker_main,
            args=(worker.index, self.settings, theirs),
            name=f"watchword-worker-{worker.index}",
        )
        process.start()
        theirs.close()
        worker.process, worker.connection, worker.ready = process, ours, None
        worker.started_at = time.monotonic()

    async def wait_ready(self, worker: Worker) -> Ready | Failed | None:
        """The worker's first message; None when it died without one."""
        assert worker.connection is not None
        try:
            await asyncio.wait_for(readable(worker.connection.fileno()), START_TIMEOUT_SECONDS)
            message = worker.connection.recv()
        except (EOFError, OSError, TimeoutError):
            return None
        worker.ready = message if isinstance(message, Ready) else None
        return message if isinstance(message, Ready | Failed) else None

    async def start(self) -> None:
        """Start every worker; when one cannot start, stop the others and say why."""
        for worker in self.workers:
            self.spawn(worker)
        answers = await asyncio.gather(*(self.wait_ready(worker) for worker in self.workers))
        for worker, answer in zip(self.workers, answers, strict=True):
            if not isinstance(answer, Ready):
                await self.stop()
                raise StartupError(f"worker {worker.index} did not start: {_why(answer)}")
        self.tasks = [asyncio.create_task(self.keep(worker)) for worker in self.workers]

    async def keep(self, worker: Worker) -> None:
        """Restart the worker whenever it dies, until the pool stops."""
        while not self.stopping.is_set():
            assert worker.process is not None
            await readable(worker.process.sentinel)
            worker.process.join()
            if self.stopping.is_set():
                return
            await self.restart(worker)

    async def restart(self, worker: Worker) -> None:
        assert worker.process is not None
        if time.monotonic() - worker.started_at >= STABLE_SECONDS:
            worker.backoff = RESTART_BACKOFF_SECONDS
        log.error(
            "worker %d (pid %s) exited with %s; restarting it in %.1fs",
            worker.index,
            worker.process.pid,
            worker.process.exitcode,
            worker.backoff,
        )
        if self.restarts is not None:
            self.restarts.labels(str(worker.index)).inc()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), worker.backoff)
        if self.stopping.is_set():
            return
        worker.backoff = min(worker.backoff * 2, MAX_RESTART_BACKOFF_SECONDS)
        self.spawn(worker)
        answer = await self.wait_ready(worker)
        if isinstance(answer, Ready):
            log.info("worker %d restarted (pid %d)", worker.index, answer.pid)
            return
        log.error("worker %d did not start again: %s", worker.index, _why(answer))
        if worker.process is not None and worker.process.is_alive():
            worker.process.kill()  # hung in its start: `keep` sees it end and tries again, later

    async def stop(self) -> None:
        """SIGTERM every worker (each drains as one server does), then kill any that outlive the grace."""
        self.stopping.set()
        live = [w.process for w in self.workers if w.process is not None and w.process.is_alive()]
        for process in live:
            process.terminate()  # SIGTERM
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS
        for process in live:
            await asyncio.to_thread(process.join, max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                log.error("worker pid %s did not stop in time: killing it", process.pid)
                process.kill()
                await asyncio.to_thread(process.join, 5)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _why(answer: Failed | None) -> str:
    return answer.message if isinstance(answer, Failed) else "it exited or did not start in time"


class WorkersCollector(Collector):
    """The replica's metrics: every worker's own, read from its loopback port at scrape time, each
    sample labelled `worker`. Each worker computes its callback gauges (caches, in flight) itself, so
    they stay right; prometheus_client's multiprocess mode could not carry them."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for worker in self.pool.workers:
            for family in self._scrape(worker):
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type, family.unit)
                )
                for sample in family.samples:
                    labels = {**sample.labels, "worker": str(worker.index)}
                    into.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
        return merged.values()

    def _scrape(self, worker: Worker) -> Iterable[Metric]:
        ready = worker.ready
        if ready is None or ready.metrics_port is None:
            return ()  # starting or restarting: its samples come back with it
        url = f"http://127.0.0.1:{ready.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_SECONDS) as answer:
                text = answer.read().decode()
        except OSError as exc:
            log.warning("cannot read worker %d's metrics: %s", worker.index, exc)
            return ()
        return list(text_string_to_metric_families(text))


def restart_counter(registry: CollectorRegistry, count: int) -> Counter:
    restarts = Counter(
        "watchword_worker_restarts",
        "Worker processes restarted after they died unexpectedly, by worker index.",
        labelnames=["worker"],
        registry=registry,
    )
    for index in range(count):
        restarts.labels(str(index))  # every worker's count shows, 0 until it restarts
    return restarts


async def supervise(settings: Settings, count: int, out: TextIO = sys.stdout) -> None:
    """Run `count` workers until SIGTERM or SIGINT, then drain them all. The ports are bound first, so
    that a port in use stops the start before anything is written."""
    reserved = reserve_ports(settings)
    try:
        ports = {name: sock.getsockname()[1] for name, sock in reserved.items()}
        registry = CollectorRegistry(auto_describe=False)  # the supervisor's: its workers' and the restarts
        pool = Pool(worker_settings(settings, ports), count, restart_counter(registry, count))
        registry.register(WorkersCollector(pool))
        metrics_server = start_metrics(settings, registry)
        try:
            await _run(settings, pool, ports, metrics_server, out)
        finally:
            if metrics_server is not None:
                await asyncio.to_thread(metrics_server.stop)
    finally:
        close_all(reserved.values())


async def _run(
    settings: Settings,
    pool: Pool,
    ports: dict[str, int],
    metrics_server: observe_metrics.MetricsServer | None,
    out: TextIO,
) -> None:
    async with contextlib.AsyncExitStack() as store_closed:  # the workers open their own
        prepared = await prepare(store_closed, settings)  # once for the replica: schema, signing key, token
    if prepared.admin_token is not None:
        app.show_admin_token(prepared.admin_token, out)  # at once: a worker failing to start cannot lose it
    signalled = _on_signal()  # from here on, a SIGTERM during the start stops it as well
    await pool.start()
    _announce(settings, ports, pool, metrics_server, out)
    await signalled.wait()
    log.info("shutting down: draining %d workers for up to %ss", pool.count, settings.shutdown_grace_seconds)
    await pool.stop()


def start_metrics(settings: Settings, registry: CollectorRegistry) -> observe_metrics.MetricsServer | None:
    if not settings.metrics_enabled:
        return None
    with cannot_serve("metrics", settings.metrics_host, settings.metrics_port):
        return observe_metrics.serve_registry(
            registry, settings.metrics_host, settings.metrics_port, settings.idle_timeout_seconds
        )


def _on_signal() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled.set)
    return signalled


def _announce(
    settings: Settings,
    ports: dict[str, int],
    pool: Pool,
    metrics_server: observe_metrics.MetricsServer | None,
    out: TextIO,
) -> None:
    """The same lines as one process prints, once every worker serves; `watchword listening` last."""
    pids = ", ".join(str(w.ready.pid) for w in pool.workers if w.ready is not None)
    print(f"watchword workers: {pool.count} (pids {pids})", file=out, flush=True)
    listening = app.Listening(
        ports.get("port", settings.port),
        ports.get("http_port"),
        metrics_server.port if metrics_server is not None else None,
        ports.get("ext_authz_http_port"),
    )
    app.announce(settings, listening, out, None)


def run(settings: Settings, count: int) -> None:
    """`watchword serve` with more than one worker."""
    log.info("open-file limit: %s", listeners.raise_open_file_limit())
    asyncio.run(supervise(settings, count))
