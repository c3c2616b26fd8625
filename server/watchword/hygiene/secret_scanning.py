"""Leaked-key reports from secret scanners, in the format of GitHub's secret scanning partner program.

A scanner that finds a Watchword secret in public code POSTs a JSON array of `{"token", "type", "url",
"source"}` to `REPORT_PATH`, signed: `Github-Public-Key-Identifier` names one of the scanner's keys and
`Github-Public-Key-Signature` is the base64 ECDSA P-256 SHA-256 signature (DER) of the raw body. The keys
are the scanner's key document (GitHub's `{"public_keys": [{"key_identifier", "key", "is_current"}]}`
shape): the operator's copy (`secret_scanning_public_keys_file`, read again whenever the file changes), or
fetched from the URL the operator configures (`secret_scanning_public_keys_url`, again when a report names
a key it lacks).

Each reported token: its checksum first (`secret_format.parse`: costs no query), then the credential its id
names, whose current secret (or previous one, during a rotation's overlap) must match the token's hash
(constant time). A match is deactivated, or flagged (`leaked_credential_action`), audited and counted; the
answer labels every token `true_positive` or `false_positive`, by its SHA-256 (`token_hash`), never echoing
a secret. An unsigned, badly signed, oversized or malformed report changes nothing and gets a 4xx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from watchword import reasons, secret_format
from watchword.domain import CredentialKind
from watchword.store.models import Credential
from watchword.store.repository import NotFoundError, Store

log = logging.getLogger("watchword.hygiene")

REPORT_PATH = "/secret-scanning/github"
KEY_ID_HEADER = "github-public-key-identifier"
SIGNATURE_HEADER = "github-public-key-signature"
MAX_BODY_BYTES = 1024 * 1024
MAX_ENTRIES = 1000
MAX_TOKEN_CHARS = 1024
MAX_FIELD_CHARS = 2048  # `type`, `url`, `source`
MAX_KEY_DOCUMENT_BYTES = 256 * 1024
MIN_REFRESH_SECONDS = 60.0  # between two fetches of the key document for an unknown key id
RETRY_AFTER_FAILURE_SECONDS = 2.0  # after a fetch that failed
TRUE_POSITIVE, FALSE_POSITIVE = "true_positive", "false_positive"
Action = Literal["deactivate", "flag"]


class ReportRefused(Exception):
    """A report that is not processed at all: its HTTP status and reason code (`reasons`)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


# ---- the scanner's public keys ----


def _public_key(pem: object) -> ec.EllipticCurvePublicKey | None:
    if not isinstance(pem, str):
        return None
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    return key


def parse_key_document(text: str) -> dict[str, ec.EllipticCurvePublicKey]:
    """The P-256 keys of a key document, by identifier; ValueError for a document that is not one."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    entries = document.get("public_keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('expected {"public_keys": [{"key_identifier", "key", "is_current"}, ...]}')
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in entries:
        identifier = entry.get("key_identifier") if isinstance(entry, dict) else None
        key = _public_key(entry.get("key")) if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or not identifier or key is None:
            raise ValueError("every entry needs a key_identifier and an ECDSA P-256 public key in PEM")
        keys[identifier] = key
    return keys


class PublicKeys:
    """The keys of `path`, read again when the file changes (the scanner rotates its keys: the operator
    replaces the file, no restart). A file that cannot be read keeps the keys read before."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self.load()

    def load(self) -> None:
        """Read the file; ValueError (naming the file) when it is not a usable key document."""
        try:
            status = self._path.stat()
            keys = parse_key_document(self._path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"secret_scanning_public_keys_file {str(self._path)!r}: {exc}") from None
        self._keys, self._stamp = keys, (status.st_mtime_ns, status.st_size)

    async def get(self, identifier: str) -> ec.EllipticCurvePublicKey | None:
        self._refresh()
        return self._keys.get(identifier)

    def _refresh(self) -> None:
        try:
            status = self._path.stat()
            if (status.st_mtime_ns, status.st_size) != self._stamp:
                self.load()
        except (OSError, ValueError) as exc:
            log.warning("keeping the secret scanner's keys read before: %s", exc)


class FetchedKeys:
    """The key document at `url` (the scanner's own, e.g. GitHub's `meta/public_keys/secret_scanning`),
    fetched at start and again when a report names a key it lacks, at most once per `min_refresh`
    seconds (2 s after a failed fetch): a rotated key is picked up by the first report signed with it.
    A failed fetch keeps the keys fetched before. No redirect is followed; the answer is bounded."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        min_refresh: float = MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._client = client
        self._min_refresh = min_refresh
        self._clock = clock
        self._fetched_at: float | None = None
        self._failed = False  # the last fetch failed: tried again sooner
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}

    async def load(self) -> None:
        """Fetch the document; ValueError (naming the URL) when it cannot be had or used."""
        self._fetched_at, self._failed = self._clock(), True
        try:
            self._keys = parse_key_document(await self._fetch())
        except (httpx.HTTPError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"secret_scanning_public_keys_url {self._url!r}: {exc}") from None
        self._failed = False

    async def _fetch(self) -> str:
        async with self._client.stream("GET", self._url, headers={"accept": "application/json"}) as answer:
            if answer.status_code != 200:
                raise ValueError(f"answered HTTP {answer.status_code}")
            body = b""
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > MAX_KEY_DOCUMENT_BYTES:
                    raise ValueError("the key document is too large")
        return body.decode("utf-8")

    async def get(self, identifier: str) -> ec.EllipticCurvePublicKey | None:
        key = self._keys.get(identifier)
        wait = min(self._min_refresh, RETRY_AFTER_FAILURE_SECONDS) if self._failed else self._min_refresh
        due = self._fetched_at is None or self._clock() - self._fetched_at >= wait
        if key is None and due:
            try:
                await self.load()
            except ValueError as exc:
                log.warning("keeping the secret scanner's keys fetched before: %s", exc)
            key = self._keys.get(identifier)
        return key


KeySource = PublicKeys | FetchedKeys


async def verify_signature(keys: KeySource, key_id: str, signature: str, body: bytes) -> None:
    """ReportRefused (401) unless `signature` is a valid signature of `body` by the key `key_id`."""
    if not key_id or not signature:
        raise ReportRefused(401, reasons.LEAK_REPORT_UNSIGNED, "the report carries no signature")
    key = await keys.get(key_id)
    if key is None:
        raise ReportRefused(401, reasons.LEAK_REPORT_KEY_UNKNOWN, "the signing key is not a configured one")
    try:
        key.verify(base64.b64decode(signature, validate=True), body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        message = "the signature does not verify"
        raise ReportRefused(401, reasons.LEAK_REPORT_SIGNATURE_INVALID, message) from None


# ---- the report ----


@dataclass(frozen=True, slots=True)
class ReportedToken:
    token: str
    type: str
    url: str
    source: str


def _text(entry: dict[str, Any], name: str, limit: int, required: bool = False) -> str:
    value = entry.get(name, "")
    if not isinstance(value, str) or len(value) > limit or (required and not value):
        raise ReportRefused(400, reasons.LEAK_REPORT_MALFORMED, f"each entry's {name} must be a short string")
    return value


def parse_report(body: bytes) -> list[ReportedToken]:
    """The entries of a (verified) report body; ReportRefused (400) when it is not the program's format."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ReportRefused(400, reasons.LEAK_REPORT_MALFORMED, "the body is not JSON") from None
    if not isinstance(document, list) or not document or len(document) > MAX_ENTRIES:
        message = f"the body must be a JSON array of 1 to {MAX_ENTRIES} reported tokens"
        raise ReportRefused(400, reasons.LEAK_REPORT_MALFORMED, message)
    if not all(isinstance(entry, dict) for entry in document):
        raise ReportRefused(400, reasons.LEAK_REPORT_MALFORMED, "each entry must be a JSON object")
    return [
        ReportedToken(
            token=_text(entry, "token", MAX_TOKEN_CHARS, required=True),
            type=_text(entry, "type", MAX_FIELD_CHARS),
            url=_text(entry, "url", MAX_FIELD_CHARS),
            source=_text(entry, "source", MAX_FIELD_CHARS),
        )
        for entry in document
    ]


def token_hash(token: str) -> str:
    """The program's `token_hash`: the hex SHA-256 of the token (what the store keeps of a secret)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Finding:
    """What one reported token turned out to be. `outcome`: deactivated, flagged, already_deactivated,
    already_flagged, or false_positive; the credential when it matched one."""

    reported: ReportedToken
    outcome: str
    credential: Credential | None = None

    @property
    def label(self) -> str:
        return FALSE_POSITIVE if self.credential is None else TRUE_POSITIVE

    def answer(self) -> dict[str, str]:
        return {
            "token_hash": token_hash(self.reported.token),
            "token_type": self.reported.type,
            "label": self.label,
        }


@dataclass
class LeakStats:
    """For the metrics: reports by result, and reported tokens by outcome."""

    reports: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    def count(self, counts: dict[str, int], key: str) -> None:
        counts[key] = counts.get(key, 0) + 1


def _matches(token: str, record: Credential, kind: CredentialKind, now: datetime) -> bool:
    """The token is the credential's current secret, or its previous one while that still works."""
    if record.kind != int(kind):
        secret_format.secret_matches(token, record.secret_hash)  # the same work as a match: no timing hint
        return False
    current = secret_format.secret_matches(token, record.secret_hash)
    in_overlap = record.previous_secret_valid_until is not None and now < record.previous_secret_valid_until
    previous = in_overlap and secret_format.secret_matches(token, record.previous_secret_hash)
    return current or previous


Audit = Callable[[Finding], None]


class LeakReports:
    """Processes verified reports: finds each token's credential and applies `action` to it."""

    def __init__(self, store: Store, keys: KeySource, action: Action, audit: Audit | None = None) -> None:
        self._store = store
        self.keys = keys
        self._action = action
        self._audit = audit
        self.stats = LeakStats()

    async def receive(self, body: bytes, key_id: str, signature: str) -> list[dict[str, str]]:
        """The program's answer to a signed report; ReportRefused when it is refused whole."""
        try:
            await verify_signature(self.keys, key_id, signature, body)
            reported = parse_report(body)
        except ReportRefused as refused:
            self.stats.count(self.stats.reports, refused.reason)
            raise
        findings = [await self._examine(entry) for entry in reported]
        self.stats.count(self.stats.reports, "accepted")
        return [finding.answer() for finding in findings]

    async def _examine(self, reported: ReportedToken) -> Finding:
        finding = await self._find(reported)
        self.stats.count(self.stats.tokens, finding.outcome)
        if self._audit is not None:
            self._audit(finding)
        if finding.credential is not None:
            log.warning(
                "secret scanning: credential %s reported leaked (%s): %s",
                finding.credential.id,
                reported.url or "no url",
                finding.outcome,
            )
        return finding

    async def _find(self, reported: ReportedToken) -> Finding:
        parsed = secret_format.parse(reported.token)
        if parsed is None:
            return Finding(reported, "false_positive")
        now = datetime.now(UTC)
        record = await self._store.get_credential(parsed.credential_id)
        if record is None or not _matches(reported.token, record, parsed.kind, now):
            if record is None:
                secret_format.secret_matches(reported.token, secret_format.hash_secret("no credential"))
            return Finding(reported, "false_positive")
        return await self._act(reported, record, now)

    async def _act(self, reported: ReportedToken, record: Credential, now: datetime) -> Finding:
        if self._action == "flag":
            already = record.leak_reported_at is not None
            updated = await self._updated(self._store.flag_leaked_credential(record.id, now), record)
            return Finding(reported, "already_flagged" if already else "flagged", updated)
        already = record.deactivated_at is not None
        updated = await self._updated(self._store.deactivate_leaked_credential(record.id, now), record)
        return Finding(reported, "already_deactivated" if already else "deactivated", updated)

    @staticmethod
    async def _updated(call: Awaitable[Credential], record: Credential) -> Credential:
        """The credential after the action (deleted meanwhile: as it was found, nothing left to do)."""
        try:
            return await call
        except NotFoundError:
            return record
