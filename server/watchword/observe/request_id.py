"""Request ids: taken from the caller's `x-request-id` when it is safe to repeat, otherwise minted.

A caller's id is echoed into logs, the audit log and response metadata, so it must be short and made of
characters that cannot forge a log line or a header (no spaces, quotes, control characters).
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Iterable

HEADER = "x-request-id"
MAX_LENGTH = 128
# Letters, digits and `-._:`: enough for UUIDs, ULIDs, Envoy's and most tracers' ids.
_SAFE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")


def is_valid(value: object) -> bool:
    return isinstance(value, str) and _SAFE.fullmatch(value) is not None


# New ids: a random prefix per process and a counter, 24 hex digits. Unique, not secret: a request id
# identifies a call in logs, it proves nothing (and costs no system call per RPC).
_PREFIX = secrets.token_hex(6)
_COUNTER = itertools.count(1)


def new() -> str:
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFF:012x}"


def choose(metadata: Iterable[tuple[str, object]] | None) -> str:
    """The caller's id when there is exactly one valid `x-request-id`, else a fresh one."""
    found: object = None
    count = 0
    for key, value in metadata or ():
        if key == HEADER:
            found = value
            count += 1
    if count == 1 and is_valid(found):
        assert isinstance(found, str)
        return found
    return new()
