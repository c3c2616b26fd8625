"""Builders of key hygiene: the usage counter on the pipeline with its flusher (closer: the last flush,
after the last call), and the leaked-key reports (when a scanner's keys are configured)."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

import httpx

from watchword.compose.failures import StartupError, on_close
from watchword.compose.observing import Observing
from watchword.compose.replica import Prepared
from watchword.config import Settings
from watchword.domain import CredentialKind
from watchword.hygiene.secret_scanning import (
    Audit,
    FetchedKeys,
    Finding,
    KeySource,
    LeakReports,
    PublicKeys,
)
from watchword.hygiene.usage import UsageCounter, UsageFlusher
from watchword.observe.decisions import Recorder
from watchword.pipeline import Pipeline

log = logging.getLogger("watchword.hygiene")
KEY_FETCH_TIMEOUT = httpx.Timeout(5.0)


def build_usage(
    stack: AsyncExitStack, settings: Settings, prepared: Prepared, pipeline: Pipeline, observing: Observing
) -> UsageFlusher | None:
    """Count credential uses on `pipeline` and flush them (None: usage tracking off)."""
    if not settings.usage_tracking_enabled:
        return None
    pipeline.usage = UsageCounter(settings.usage_max_pending)
    flusher = UsageFlusher(
        prepared.store,
        pipeline.usage,
        settings.usage_flush_seconds,
        settings.usage_max_pending,
        settings.usage_retention_days,
    )
    # Pushed before the listeners: unwound after them, so the last flush sees the last call's uses.
    on_close(stack, "the usage flusher", flusher.stop)
    flusher.start()
    observing.metrics.watch_usage(flusher.stats)
    return flusher


async def build_leak_reports(
    stack: AsyncExitStack, settings: Settings, prepared: Prepared, observing: Observing
) -> LeakReports | None:
    """The leaked-key report endpoint's core (None: no scanner keys configured); a bad key file stops the
    start, an unreachable key URL only warns (it is fetched again with the first report)."""
    keys = await scanner_keys(stack, settings)
    if keys is None:
        return None
    if not settings.http_enabled:
        log.warning("secret scanning keys are set but http_enabled is false: no report endpoint")
    reports = LeakReports(
        prepared.store, keys, settings.leaked_credential_action, audit_finding(observing.recorder)
    )
    observing.metrics.watch_leak_reports(reports.stats)
    return reports


async def scanner_keys(stack: AsyncExitStack, settings: Settings) -> KeySource | None:
    if settings.secret_scanning_public_keys_url:
        client = httpx.AsyncClient(timeout=KEY_FETCH_TIMEOUT, follow_redirects=False)
        on_close(stack, "the secret scanner key client", client.aclose)
        fetched = FetchedKeys(settings.secret_scanning_public_keys_url, client)
        try:
            await fetched.load()
        except ValueError as exc:
            log.warning("no secret scanner keys yet (fetched again with the first report): %s", exc)
        return fetched
    if settings.secret_scanning_public_keys_file is None:
        return None
    try:
        return PublicKeys(settings.secret_scanning_public_keys_file)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def _safe(value: str, token: str) -> str:
    """A field of the report as audited: never the token itself, wherever the scanner put it."""
    return "[redacted]" if token in value else value


def audit_finding(recorder: Recorder) -> Audit:
    def audit(finding: Finding) -> None:
        reported, record = finding.reported, finding.credential
        what: dict[str, Any] = {
            name: _safe(value, reported.token)
            for name, value in (("type", reported.type), ("source", reported.source), ("url", reported.url))
            if value
        }
        if record is None:
            recorder.leak_reported(None, {}, finding.outcome, what)
            return
        who = {"credential_id": record.id}
        if record.organization_id:
            who["organization_id"] = record.organization_id
        recorder.leak_reported(CredentialKind(record.kind), who, finding.outcome, what)

    return audit
