"""S6 for stored credentials: deactivated or expired is refused at once, whoever presents it; and a token
minted from a secret dies when that secret stops verifying (I6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from watchword import reasons
from watchword.domain import Refusal
from watchword.store.models import Credential


def is_usable(record: Credential, now: datetime) -> bool:
    return record.deactivated_at is None and (record.expires_at is None or record.expires_at > now)


def state_refusal(record: Credential, now: datetime, what: str = "the credential") -> Refusal | None:
    """Why `record` can no longer be used, or None. `what` names it in the message (e.g. "the token's
    signing secret"); only ever called once the caller proved it holds the secret or a signed token."""
    if record.deactivated_at is not None:
        return Refusal(reason=reasons.CREDENTIAL_DEACTIVATED, message=f"{what} has been deactivated")
    if record.expires_at is not None and record.expires_at <= now:
        return Refusal(reason=reasons.CREDENTIAL_EXPIRED, message=f"{what} has expired")
    return None


def secret_version(secret_hash: str | None) -> str:
    """Which of a credential's secrets something was proved with, safe to put in a token: a digest of
    the stored hash (itself a SHA-256 of a ~190-bit secret), under its own label so it is no stored value.
    A rotation changes it; tokens minted from a secret carry it (I6)."""
    if not secret_hash:
        return ""
    digest = hashlib.sha256(b"watchword.secret_version\x00" + secret_hash.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


def proved_secret_version(record: Credential, previous: bool) -> str:
    """The version of the secret a caller proved: the current one, or the previous during its overlap."""
    return secret_version(record.previous_secret_hash if previous else record.secret_hash)


def secret_still_verifies(record: Credential, version: str | None, now: datetime) -> bool:
    """Whether the secret a token was minted from (its `version`) still verifies: the current secret, or
    the previous one until its rotation overlap ends. A token from before versions were recorded (None)
    is trusted only while its credential has never been rotated."""
    if version is None:
        return record.rotated_at is None
    if _same(version, secret_version(record.secret_hash)):
        return True
    in_overlap = record.previous_secret_valid_until is not None and now < record.previous_secret_valid_until
    return in_overlap and _same(version, secret_version(record.previous_secret_hash))
