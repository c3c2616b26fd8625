"""The audit log: one JSON line per decision and per admin call, written off the event loop.

Callers hand over small dicts of ids, reason codes and rule ids (never a credential, header, token or
outbound secret: see `decisions.py` and `interceptor.py`, which build every record). `write` turns the
record into its line at once (a few microseconds, the encodings of repeated parts remembered) and appends
it to a bounded deque; a thread writes the lines. Encoding in that thread instead costs the same CPU in
bursts: it holds the GIL for a whole batch while checks wait (about 5 µs a record: 2 ms every 50 ms flush
at 8,000 checks/s). When the writer falls behind (a slow disk, a stdout nobody reads) records are
dropped and counted, never queued without bound and never waited for: an audit backlog must not stall
authorization.
"""

from __future__ import annotations

import json
import logging
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from watchword.domain import CredentialKind, Principal, Resource

log = logging.getLogger("watchword.audit")

Record = dict[str, Any]

DEFAULT_MAX_PENDING = 65536
FLUSH_INTERVAL_SECONDS = 0.05
# Writes up to this size to a pipe are atomic (POSIX PIPE_BUF); O_APPEND file writes are atomic anyway.
ATOMIC_WRITE_BYTES = select.PIPE_BUF
KIND_LABELS = {kind: kind.name.lower() for kind in CredentialKind}


def principal_fields(principal: Principal) -> dict[str, str]:
    """Who a verified principal is, by ids only."""
    who = {"kind": KIND_LABELS[principal.kind], "id": principal.id}
    if principal.credential_id and principal.credential_id != principal.id:
        who["credential_id"] = principal.credential_id
    if principal.organization_id:
        who["organization_id"] = principal.organization_id
    if principal.subject is not None:
        who["subject"] = f"{principal.subject.type}:{principal.subject.id}"
    if principal.token_id:
        who["token_id"] = principal.token_id
    return who


def resource_fields(resource: Resource) -> dict[str, str]:
    fields = {
        "organization_id": resource.organization_id,
        "application_id": resource.application_id,
        "event_type": resource.event_type,
        "object_id": resource.object_id,
    }
    if resource.subject is not None:
        fields["subject"] = f"{resource.subject.type}:{resource.subject.id}"
    return {name: value for name, value in fields.items() if value}


def _domain_fields(value: object) -> dict[str, str]:
    # Principals and resources become fields here, only when a line is made. Any other object is refused
    # (its repr might hold a credential): the record is dropped, never stringified.
    if isinstance(value, Principal):
        return principal_fields(value)
    if isinstance(value, Resource):
        return resource_fields(value)
    raise TypeError(f"{type(value).__name__} is not allowed in an audit record")


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_domain_fields)
_second: tuple[int, str] = (-1, "")


def rfc3339(timestamp: float) -> str:
    """RFC 3339 UTC with milliseconds; the date and time part is reused within a second."""
    global _second
    whole = int(timestamp)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((timestamp - whole) * 1000):03d}Z"


_quoted = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_principals: dict[tuple[object, ...], str] = {}
_MAX_REMEMBERED_PRINCIPALS = 10_000


def _principal_json(principal: Principal) -> str:
    # The same callers come back again and again: their `who` is encoded once.
    key = (
        principal.kind,
        principal.id,
        principal.credential_id,
        principal.organization_id,
        principal.subject,
        principal.token_id,
    )
    encoded = _principals.get(key)
    if encoded is None:
        if len(_principals) >= _MAX_REMEMBERED_PRINCIPALS:
            _principals.clear()
        encoded = _principals[key] = _ENCODER.encode(principal_fields(principal))
    return encoded


# What is encoded again and again, encoded once (each bounded, cleared when full): keys with their colon,
# the values of the fields that take few values, and decisions' `what`.
_keys: dict[str, str] = {}
_REPEATED_VALUES = frozenset({"rpc", "result", "reason", "rule", "peer"})
_values: dict[str, str] = {}
_whats: dict[tuple[str, Resource], str] = {}
_MAX_REMEMBERED = 10_000


def _remember(memo: dict[Any, str], key: object, encoded: str) -> str:
    if len(memo) >= _MAX_REMEMBERED:
        memo.clear()
    memo[key] = encoded
    return encoded


def _what_json(what: dict[str, Any]) -> str:
    # A decision's usual `what`: {"action": ..., "resource": Resource}, in that order.
    if len(what) == 2 and next(iter(what)) == "action":
        action, resource = what["action"], what.get("resource")
        if type(action) is str and type(resource) is Resource:
            key = (action, resource)
            encoded = _whats.get(key)
            return encoded or _remember(_whats, key, _ENCODER.encode(what))
    return _ENCODER.encode(what)


def _json(value: object) -> str:
    if isinstance(value, str):
        return str(_quoted(value))
    if isinstance(value, Principal):
        return _principal_json(value)
    if type(value) is dict:
        return _what_json(value)
    return _ENCODER.encode(value)


def _field(key: str, value: object) -> str:
    prefix = _keys.get(key) or _remember(_keys, key, f"{_quoted(key)}:")
    if type(value) is str:  # most fields: ids, reason codes
        if key in _REPEATED_VALUES:
            return prefix + (_values.get(value) or _remember(_values, value, str(_quoted(value))))
        return prefix + _quoted(value)
    return prefix + _json(value)


def to_line(record: Record) -> str:
    """One JSON object on one line, ASCII only, keys in the record's order; `ts` (seconds since the epoch)
    becomes RFC 3339 UTC."""
    fields = [f'"ts":"{rfc3339(record["ts"])}"']
    fields.extend(_field(key, value) for key, value in record.items() if key != "ts")
    return "{" + ",".join(fields) + "}\n"


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
        self._pending: deque[str] = deque()
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
        """Queue one record's line (the record with `ts`); never blocks. Called from the event loop."""
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        try:
            line = to_line(record)
        except (TypeError, ValueError) as exc:
            self.dropped += 1
            log.error("audit record of %s dropped: %s", record.get("rpc"), exc)
            return
        self._pending.append(line)

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
            lines.append(pending.popleft())
        if not lines or self._handle is None:
            return
        written = 0
        try:
            for chunk in whole_line_chunks(lines):
                self._write("".join(chunk))
                written += len(chunk)
        except (OSError, ValueError):
            self.dropped += len(lines) - written
            log.exception("cannot write %d audit record(s)", len(lines) - written)
        self.written += written

    def _write(self, text: str) -> None:
        """One write(2) of whole lines straight to the descriptor (no buffer that could split them)."""
        assert self._handle is not None
        try:
            fd = self._handle.fileno()
        except (AttributeError, OSError):  # io.UnsupportedOperation: an in-memory stream
            self._handle.write(text)
            self._handle.flush()
            return
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data) :]


def whole_line_chunks(lines: list[str], limit: int = ATOMIC_WRITE_BYTES) -> Iterator[list[str]]:
    """Consecutive lines grouped so that each group is written in one go of at most `limit` bytes (a
    longer line alone): several worker processes append to one file or pipe, and a write of up to
    PIPE_BUF bytes is never interleaved with another process's, so no record is ever split."""
    chunk: list[str] = []
    size = 0
    for line in lines:  # to_line() makes ASCII-only lines: characters are bytes
        if chunk and size + len(line) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield chunk
