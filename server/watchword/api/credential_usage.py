"""Key hygiene in the admin answers: each credential's uses over the last 30 UTC days (and per day, for
GetCredential), read from the per-day counts the usage flushers write (`hygiene.usage`) in the same
statement as the credential itself, so `last_used_at` and the counts always agree; and the cut-off of
ListCredentials' `unused_for_days`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from watchword.api import convert
from watchword.api.errors import FieldError
from watchword.hygiene.usage import USAGE_WINDOW_DAYS, utc_day
from watchword.store import models
from watchword.v1 import admin_pb2

MAX_UNUSED_DAYS = 3660


def window_start(now: datetime) -> date:
    """The first day of the last 30 UTC days, today included."""
    return utc_day(now) - timedelta(days=USAGE_WINDOW_DAYS - 1)


def with_usage(credential: models.Credential, uses: int) -> admin_pb2.Credential:
    """A credential with its uses over the last 30 days (ListCredentials)."""
    answer = convert.credential_to_proto(credential)
    answer.uses_last_30_days = uses
    return answer


def with_daily_usage(credential: models.Credential, days: Sequence[tuple[date, int]]) -> admin_pb2.Credential:
    """A credential with its uses per day and over the last 30 days (GetCredential)."""
    answer = convert.credential_to_proto(credential)
    answer.daily_usage.extend(admin_pb2.DailyUsage(day=day.isoformat(), uses=uses) for day, uses in days)
    answer.uses_last_30_days = sum(uses for _, uses in days)
    return answer


def unused_since(days: int) -> datetime | None:
    """ListCredentials' `unused_for_days` as the moment before which the last use (or creation) lies."""
    if days == 0:
        return None
    if not 0 < days <= MAX_UNUSED_DAYS:
        raise FieldError("unused_for_days", f"must be between 0 and {MAX_UNUSED_DAYS}")
    return datetime.now(UTC) - timedelta(days=days)
