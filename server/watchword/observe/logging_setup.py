"""Log lines as JSON (one object per line) or text, each naming the request id of the RPC it belongs to.

The request id comes from `call.current` (a contextvar), so any logger used while an RPC is served tags
its lines, with no logger passed around.
"""

from __future__ import annotations

import json
import logging
import sys
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
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    out = logging.StreamHandler(stream or sys.stderr)
    out.addFilter(RequestIdFilter())
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return out


def configure(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one that writes `log_format` to stderr."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler(log_format, stream))
    root.setLevel(level)
    # httpx logs every request URL at INFO; JWKS and token fetches are reported by Watchword itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
