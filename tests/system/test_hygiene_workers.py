"""Key hygiene with worker processes on the embedded SQLite store: each worker counts and flushes its own
uses, and they add up in one row per credential and day (C5 API keys)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_workers import WORKERS, authenticate, channel_per_worker, samples

from watchword.v1 import admin_pb2, common_pb2

from support.server import WatchwordProcess


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WatchwordProcess]:
    env = {"WATCHWORD_WORKERS": str(WORKERS), "WATCHWORD_USAGE_FLUSH_SECONDS": "0.2"}
    with WatchwordProcess(tmp_path / "data", env=env) as process:
        yield process


def test_c5_uses_through_every_worker_add_up(workers: WatchwordProcess) -> None:
    admin, metadata = workers.admin(), workers.admin_metadata
    organization = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="w"), metadata=metadata)
    request = admin_pb2.CreateCredentialRequest(
        kind=common_pb2.CREDENTIAL_KIND_API_KEY, organization_id=organization.id, name="k"
    )
    created = admin.CreateCredential(request, metadata=metadata, timeout=10)
    channels = channel_per_worker(workers)
    for count, channel in zip((4, 6), channels.values(), strict=True):
        for _ in range(count):
            assert authenticate(channel, created.secret).HasField("principal")
        channel.close()
    deadline = time.monotonic() + 15
    get = admin_pb2.GetCredentialRequest(id=created.credential.id)
    while (credential := admin.GetCredential(get, metadata=metadata, timeout=10)).uses_last_30_days < 10:
        assert time.monotonic() < deadline, credential.uses_last_30_days
        time.sleep(0.1)
    assert credential.uses_last_30_days == 10
    flushed = samples(workers, "watchword_credential_usage_flushes_total", result="ok")
    assert sorted(worker for worker, count in flushed.items() if count > 0) == ["0", "1"]
