"""The change feed: what an admin write changed, as a small event every replica can act on.

A write that affects a decision records a `Change` inside its own transaction. On PostgreSQL the store
sends it with `pg_notify` in that transaction, so it is delivered to the other replicas on commit and
never for a write that rolled back. `parse` reads a payload back; anything malformed is refused with
`BadPayload` (the listener logs and skips it: a stray NOTIFY must never stop invalidation).

Payload (JSON, at most `MAX_PAYLOAD_BYTES`): `{"v": 1, "kind": "...", "ids": [...], "at": <unix time>,
"origin": "..."}`. `at` is the commit-side clock, for measuring how long the event took to arrive;
`origin` names the replica that wrote it, which already applied it locally.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum

CHANNEL = "watchword_changes"
VERSION = 1
# PostgreSQL's NOTIFY payload limit is 8000 bytes; ids are bounded by the admin API (convert.MAX_ID).
MAX_PAYLOAD_BYTES = 7900
MAX_IDS = 16
MAX_ID_CHARS = 256
MAX_ORIGIN_CHARS = 64


class ChangeKind(StrEnum):
    CREDENTIAL = "credential"  # created, deactivated, deleted or rotated: ids = credential ids
    APPLICATION_CREATED = "application_created"  # ids = application ids
    APPLICATION_DELETED = "application_deleted"  # cascades to its credentials
    ORGANIZATION = "organization"  # deleted: cascades to everything in it
    MEMBERSHIP = "membership"  # set or deleted: ids = user ids (subjects, whichever issuer's)
    TOKEN_REVOKED = "token_revoked"  # ids = jti
    SIGNING_KEY = "signing_key"  # created or rotated: no ids, the whole ring reloads
    OUTBOUND_CREDENTIAL = "outbound_credential"  # created, deactivated, deleted or rotated


class BadPayload(ValueError):
    """A notification that is not a change event this version understands."""


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    ids: tuple[str, ...] = ()
    at: float = 0.0  # unix time on the writer's clock, stamped just before commit
    origin: str = ""  # the replica that made the change

    def encode(self) -> str:
        document = {"v": VERSION, "kind": str(self.kind), "ids": list(self.ids), "at": self.at}
        payload = json.dumps(document | {"origin": self.origin}, separators=(",", ":"))
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError("change event too large for a notification")
        return payload


def parse(payload: str) -> Change:
    """The change a notification carries; BadPayload for anything else."""
    if len(payload.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
        raise BadPayload("payload too large")
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise BadPayload(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadPayload("not a JSON object")
    if document.get("v") != VERSION:
        raise BadPayload(f"unknown version {document.get('v')!r}")
    try:
        kind = ChangeKind(document.get("kind"))
    except ValueError:
        raise BadPayload(f"unknown kind {document.get('kind')!r}") from None
    ids = document.get("ids", [])
    if (
        not isinstance(ids, list)
        or len(ids) > MAX_IDS
        or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_CHARS for i in ids)
    ):
        raise BadPayload("ids must be a short list of non-empty strings")
    at = document.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
        raise BadPayload("at must be a unix time")
    origin = document.get("origin", "")
    if not isinstance(origin, str) or len(origin) > MAX_ORIGIN_CHARS:
        raise BadPayload("origin must be a short string")
    return Change(kind=kind, ids=tuple(ids), at=float(at), origin=origin)
