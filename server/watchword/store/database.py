"""Connecting to the store: one URL, an async engine for serving and a sync one for migrations."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from watchword.observe import tracing

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")

log = logging.getLogger("watchword.store")
ResultT = TypeVar("ResultT")

# Default bound on one store call (`store_timeout_seconds`).
DEFAULT_TIMEOUT_SECONDS = 2.0
# While the store is hung, how often a probe asks whether it answers again.
PROBE_INTERVAL_SECONDS = 0.1


class StoreTimeoutError(TimeoutError):
    """The store did not answer in time (hung, or unreachable without a refusal): an outage like any
    other (`is_store_outage`), so the outage grace applies and callers get UNAVAILABLE, never INTERNAL."""


def is_store_outage(exc: BaseException) -> bool:
    """Whether `exc` says the store cannot be reached (down, restarting, pool exhausted), as opposed to
    the store refusing a statement (a constraint, a value it cannot hold), which is no outage."""
    if isinstance(exc, DataError | IntegrityError):
        return False
    return isinstance(exc, OperationalError | DBAPIError | PoolTimeoutError | ConnectionError | OSError)


def outage_cause(exc: BaseException) -> str:
    """The first line of what the driver said, e.g. "connection refused" or "did not answer within 2s"."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}"


class DatabaseUrlError(ValueError):
    """The configured database URL cannot be used."""


def normalise_url(url: str) -> URL:
    """Parse an operator-given URL and check its backend ("sqlite:///path" or "postgresql://...")."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises several types for bad URLs
        raise DatabaseUrlError(f"cannot parse database URL: {exc}") from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise DatabaseUrlError(
            f"unsupported database backend {parsed.get_backend_name()!r}: use sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB"
        )
    return parsed


def async_url(url: str) -> URL:
    parsed = normalise_url(url)
    driver = "aiosqlite" if parsed.get_backend_name() == "sqlite" else "psycopg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")


def sync_url(url: str) -> URL:
    parsed = normalise_url(url)
    driver = "pysqlite" if parsed.get_backend_name() == "sqlite" else "psycopg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run beside the one writer, and the
    # busy timeout makes concurrent writers (this process's pool, or other processes on the file) wait
    # instead of failing at once. The timeout comes first: switching to WAL takes a lock itself, which
    # another process may hold at that moment.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _enable_sqlite_pragmas(engine: sa.Engine) -> None:
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)


def _postgres_timeouts(timeout: float) -> dict[str, Any]:
    """The server ends a statement it is still running after `timeout` (a slow query, a lock wait);
    libpq gives up connecting after it (whole seconds, at least 2)."""
    milliseconds = max(int(timeout * 1000), 1)
    return {"connect_timeout": max(round(timeout), 2), "options": f"-c statement_timeout={milliseconds}"}


def create_engine(url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> AsyncEngine:
    # pool_pre_ping: a connection broken by a database restart is found and replaced on checkout, so
    # the service recovers by itself when the database returns. pool_timeout: a call waiting for a free
    # connection (all of them held by queries a hung store never answers) gives up like the call itself.
    if url.startswith("postgresql"):
        options: dict[str, Any] = {"pool_timeout": timeout, "connect_args": _postgres_timeouts(timeout)}
    else:
        options = {}  # SQLite: no server to wait on; the time bound still covers a locked database
    engine = create_async_engine(async_url(url), pool_pre_ping=True, **options)
    _enable_sqlite_pragmas(engine.sync_engine)
    return engine


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A call given up on ends in the background; its outcome is known to be unwanted, not lost.
    if not task.cancelled():
        task.exception()


class TimeBound:
    """Bounds every store call in wall-clock time, whatever the driver does: PostgreSQL frozen (every
    backend stopped, a network that drops packets) answers nothing and refuses nothing, and pooled
    connections would wait on it for ever.

    A call past `timeout` raises StoreTimeoutError at once; the query is cancelled in the background (the
    driver asks the server to cancel it, or closes the connection). After a timeout the store counts as
    hung: calls fail at once, without queueing on it, until a probe (`SELECT 1`, every 0.1 s) is answered.
    """

    def __init__(self, timeout: float, probe: Callable[[], Awaitable[None]]) -> None:
        self.timeout = timeout
        self._probe = probe
        self.hung_since: float | None = None
        self.timeouts = 0  # calls given up on: for tests and metrics
        self._prober: asyncio.Task[None] | None = None

    async def run(self, call: Coroutine[Any, Any, ResultT]) -> ResultT:
        if self.hung_since is not None:
            call.close()
            raise StoreTimeoutError("the store is not answering; not waiting on it until it does")
        task = asyncio.ensure_future(call)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except asyncio.CancelledError:
            task.cancel()  # the caller went away: so does its query
            raise
        if task in done:
            return task.result()
        task.cancel()
        task.add_done_callback(_retrieve)
        self._hung()
        raise StoreTimeoutError(f"the store did not answer within {self.timeout:g}s")

    def _hung(self) -> None:
        self.timeouts += 1
        if self.hung_since is None:
            self.hung_since = time.monotonic()
            log.warning(
                "the store did not answer within %gs: failing store calls at once until it does", self.timeout
            )
            # Its own context: the probe belongs to no call (its lines name no request id).
            self._prober = asyncio.create_task(self._probe_until_answered(), context=contextvars.Context())

    async def _probe_until_answered(self) -> None:
        while self.hung_since is not None:
            probe = asyncio.ensure_future(self._probe())
            done, _ = await asyncio.wait({probe}, timeout=self.timeout)
            if probe in done and probe.exception() is None:
                log.warning("the store answers again after %.1fs", time.monotonic() - self.hung_since)
                self.hung_since = None
                return
            probe.cancel()
            probe.add_done_callback(_retrieve)
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober


def engine_probe(engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
    async def probe() -> None:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    return probe


def bound_calls(store: Any, bound: TimeBound) -> None:
    """Route every public coroutine method of `store` (each one transaction) through `bound`; closing
    the store stops the probe too."""
    system = store.engine.dialect.name if hasattr(store, "engine") else ""
    for name, method in inspect.getmembers(store, inspect.iscoroutinefunction):
        if not name.startswith("_") and name != "close":
            setattr(
                store, name, _bounded(method, bound, {"db.system.name": system, "db.operation.name": name})
            )
    close = store.close

    async def close_both() -> None:
        await bound.close()
        await close()

    store.close = close_both


def _bounded(
    method: Callable[..., Coroutine[Any, Any, ResultT]], bound: TimeBound, traced: dict[str, str]
) -> Callable[..., Coroutine[Any, Any, ResultT]]:
    span_name = f"store {traced['db.operation.name']}"

    @wraps(method)
    async def bounded(*args: Any, **kwargs: Any) -> ResultT:
        if tracing.enabled:  # the call's span names the method, never its arguments
            with tracing.span(span_name, traced, tracing.CLIENT):
                return await bound.run(method(*args, **kwargs))
        return await bound.run(method(*args, **kwargs))

    return bounded


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config is ConfigParser-based: '%' must be doubled.
    config.set_main_option("sqlalchemy.url", sync_url(url).render_as_string(False).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent). Runs in a transaction per migration."""
    command.upgrade(alembic_config(url), revision)


async def migrate_async(url: str) -> None:
    await asyncio.to_thread(migrate, url)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            from alembic.runtime.migration import MigrationContext

            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
