"""S6 for stored credentials: deactivated or expired is refused at once, whoever presents it."""

from __future__ import annotations

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
