"""Key hygiene in the admin answers: each credential's uses over the last 30 UTC days (and per day, for
GetCredential), read from the per-day counts the usage flushers write (`hygiene.usage`); and the cut-off of
ListCredentials' `unused_for_days`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from watchword.api.errors import FieldError
from watchword.hygiene.usage import USAGE_WINDOW_DAYS, utc_day
from watchword.store.repository import Store
from watchword.v1 import admin_pb2

MAX_UNUSED_DAYS = 3660


def window_start(now: datetime) -> date:
    """The first day of the last 30 UTC days, today included."""
    return utc_day(now) - timedelta(days=USAGE_WINDOW_DAYS - 1)


async def add_usage(store: Store, credentials: Sequence[admin_pb2.Credential]) -> None:
    """Fill in `uses_last_30_days` of each credential, with one query."""
    since = window_start(datetime.now(UTC))
    uses = await store.usage_since([credential.id for credential in credentials], since)
    for credential in credentials:
        credential.uses_last_30_days = uses.get(credential.id, 0)


async def add_daily_usage(store: Store, credential: admin_pb2.Credential) -> None:
    """Fill in `daily_usage` and `uses_last_30_days` of one credential."""
    days = await store.daily_usage(credential.id, window_start(datetime.now(UTC)))
    credential.daily_usage.extend(admin_pb2.DailyUsage(day=day.isoformat(), uses=uses) for day, uses in days)
    credential.uses_last_30_days = sum(uses for _, uses in days)


def unused_since(days: int) -> datetime | None:
    """ListCredentials' `unused_for_days` as the moment before which the last use (or creation) lies."""
    if days == 0:
        return None
    if not 0 < days <= MAX_UNUSED_DAYS:
        raise FieldError("unused_for_days", f"must be between 0 and {MAX_UNUSED_DAYS}")
    return datetime.now(UTC) - timedelta(days=days)
