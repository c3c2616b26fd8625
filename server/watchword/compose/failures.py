"""What stops a start, as one `StartupError` whose message says what to fix (never a traceback)."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack

from sqlalchemy.engine import make_url

from watchword.store.database import is_store_outage

log = logging.getLogger("watchword.compose")


class StartupError(Exception):
    """Watchword cannot start; the message says what to fix."""


def reason(exc: BaseException) -> str:
    """The first line of what went wrong, without the exception's type (the message is for operators)."""
    text = str(getattr(exc, "orig", None) or getattr(exc, "strerror", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


@contextlib.contextmanager
def cannot_serve(what: str, host: str, port: int | None) -> Iterator[None]:
    """A port in use (or an address not on this host) stops the start with where and why."""
    try:
        yield
    except OSError as exc:
        raise StartupError(f"cannot serve {what} on {host}:{port}: {reason(exc)}") from None


@contextlib.contextmanager
def store_reachable(url: str) -> Iterator[None]:
    """A store that is down or refuses us stops the start with where it is (password hidden) and why."""
    try:
        yield
    except Exception as exc:
        if not is_store_outage(exc):
            raise
        where = make_url(url).render_as_string(hide_password=True)
        raise StartupError(f"cannot reach the store at {where}: {reason(exc)}") from None


def on_close(stack: AsyncExitStack, what: str, close: Callable[[], Awaitable[object] | object]) -> None:
    """Close `what` when the start fails after this point or the server stops (in reverse order)."""

    async def closing() -> None:
        log.debug("closing %s", what)
        closed = close()
        if inspect.isawaitable(closed):
            await closed

    stack.push_async_callback(closing)
    log.debug("opened %s", what)
