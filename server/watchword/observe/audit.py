"""The audit log: one JSON line per decision and per admin call, written off the event loop.

Callers hand over small dicts of ids, reason codes and rule ids (never a credential, header, token or
outbound secret: see `decisions.py` and `interceptor.py`, which build every record). `write` only appends
to a bounded deque; a thread turns records into lines and writes them. When the writer falls behind
(a slow disk, a stdout nobody reads) records are dropped and counted, never queued without bound and
never waited for: an audit backlog must not stall authorization.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("watchword.audit")

Record = dict[str, Any]

DEFAULT_MAX_PENDING = 65536
FLUSH_INTERVAL_SECONDS = 0.05


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_line(record: Record) -> str:
    """`ts` (seconds since the epoch) becomes RFC 3339 UTC; keys keep their order; ASCII only."""
    line = {"ts": rfc3339(record.pop("ts")), **record}
    return json.dumps(line, separators=(",", ":"), default=str) + "\n"


class AuditLog:
    """`path` None writes to `stream` (stdout by default)."""

    def __init__(
        self,
        path: Path | None = None,
        stream: TextIO | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
    ) -> None:
        self._path = path
        self._stream = stream
        self._max_pending = max_pending
        self._flush_interval = flush_interval
        self._pending: deque[Record] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: TextIO | None = None
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        if self._path is not None:
            # Owner-only: the log names credentials and who did what (no secrets, still not public).
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._handle = open(fd, "a", encoding="utf-8")  # noqa: SIM115 -- closed by close()
        else:
            self._handle = self._stream or sys.stdout
        self._thread = threading.Thread(target=self._run, name="watchword-audit", daemon=True)
        self._thread.start()

    def write(self, record: Record) -> None:
        """Queue one record (with `ts`); never blocks. Called from the event loop."""
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._pending.append(record)

    def close(self) -> None:
        """Write what is queued, then stop (called at shutdown, after the last RPC)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._handle is not None and self._path is not None:
            self._handle.close()

    def _run(self) -> None:
        while not self._stopping.wait(self._flush_interval):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        pending, lines = self._pending, []
        while pending:
            lines.append(to_line(pending.popleft()))
        if not lines or self._handle is None:
            return
        try:
            self._handle.write("".join(lines))
            self._handle.flush()
            self.written += len(lines)
        except (OSError, ValueError):
            self.dropped += len(lines)
            log.exception("cannot write %d audit record(s)", len(lines))
