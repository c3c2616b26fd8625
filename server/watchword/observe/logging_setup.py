"""Log lines as JSON (one object per line) or text, each naming the request id of the RPC it belongs to.

The request id comes from `call.current` (a contextvar), so any logger used while an RPC is served tags
its lines, with no logger passed around.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, TextIO

from watchword.observe import call

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(request_suffix)s"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (and, for the text format, `request_suffix`) to every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = call.request_id()
        record.request_id = rid
        record.request_suffix = f" request_id={rid}" if rid else ""
        return True


class WorkerFilter(logging.Filter):
    """Adds `worker` (the worker process's index) to every record it passes."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


# Lines of one kind (logger, level, message template) written per interval before the rest are counted.
REPEAT_BURST = 20
REPEAT_INTERVAL_SECONDS = 10.0
# Kinds remembered (least recently seen forgotten first): templates are few, this only bounds memory.
MAX_REPEAT_KINDS = 1024


class RepeatFilter(logging.Filter):
    """Rate-limits repeated lines: a flood (every call failing alike, a listener out of file descriptors)
    must not cost more than the service, nor bury what came before it. Past `burst` lines of one kind in
    `interval` seconds, lines of that kind are counted instead of written; the first one written after
    the interval says how many were left out."""

    def __init__(
        self,
        burst: int = REPEAT_BURST,
        interval: float = REPEAT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self._clock = clock
        # kind -> [window start, lines written in it, lines left out]
        self._kinds: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        window = self._kinds.get(kind)
        if window is None or now - window[0] >= self.interval:
            left_out = int(window[2]) if window is not None else 0
            self._remember(kind, [now, 1, 0])
            if left_out:
                record.msg = f"{record.msg} [{left_out} more like this left out in {self.interval:g}s]"
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        return False

    def _remember(self, kind: tuple[str, int, str], window: list[float]) -> None:
        self._kinds[kind] = window
        self._kinds.move_to_end(kind)
        while len(self._kinds) > MAX_REPEAT_KINDS:
            self._kinds.popitem(last=False)


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"?, "exception"?}`: RFC 3339 UTC timestamps."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            line["request_id"] = rid
        worker = getattr(record, "worker", None)
        if worker is not None:
            line["worker"] = worker
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def handler(
    log_format: LogFormat, stream: TextIO | None = None, worker: int | None = None
) -> logging.Handler:
    """`worker`: the index of the worker process writing (its lines say so)."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.addFilter(RepeatFilter())
    out.addFilter(RequestIdFilter())
    text_format = TEXT_FORMAT
    if worker is not None:
        out.addFilter(WorkerFilter(worker))
        text_format = TEXT_FORMAT + " worker=%(worker)s"
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(text_format))
    return out


def configure(
    level: str, log_format: LogFormat, stream: TextIO | None = None, worker: int | None = None
) -> None:
    """Replace the root logger's handlers with one that writes `log_format` to stderr."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler(log_format, stream, worker))
    root.setLevel(level)
    # httpx logs every request URL at INFO; JWKS and token fetches are reported by Watchword itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
