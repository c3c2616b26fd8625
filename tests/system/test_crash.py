"""`kill -9` during admin writes (#8): after a restart the store is consistent. Every credential the
server acknowledged is there with exactly the secrets it should have; a write that was in flight when
the process died is there whole or not at all; nothing is half-written.

Workers create credentials (an API key, hashed only; a tenant signing secret, hashed and sealed under
the master key), rotate them with an overlap and deactivate them, and keep a journal of what the server
acknowledged. The process is SIGKILLed mid-stream and the rows are then checked against the journal.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from watchword import reasons
from watchword.crypto.master_key import MasterKey
from watchword.identify.sealed_keys import sealing_purpose
from watchword.store import database
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.postgres import PostgresServer
from support.server import WatchwordProcess
from support.shared_database import PRODUCTION, shared_database_settings
from support.tenants import API_KEY, make_tenant

TENANT_SECRET = common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET
WORKERS = 3
LOAD_SECONDS = 1.5
OVERLAP_SECONDS = 3600


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass
class Journal:
    """What the server acknowledged, per credential id, and the one write that was in flight."""

    secrets: dict[str, list[str]] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    deactivated: set[str] = field(default_factory=set)
    pending: tuple[str, str] | None = None  # (operation, credential id or "" for a create)
    ended_with: grpc.StatusCode | None = None  # how the loop's last call failed when the process died


def _write_loop(
    server: WatchwordProcess, organization_id: str, journal: Journal, stop: threading.Event
) -> None:
    admin, md = server.admin(), server.admin_metadata
    number = 0
    try:
        while not stop.is_set():
            number += 1
            kind = API_KEY if number % 2 else TENANT_SECRET
            journal.pending = ("create", "")
            created = admin.CreateCredential(
                admin_pb2.CreateCredentialRequest(
                    kind=kind,
                    organization_id=organization_id,
                    name=f"crash-{number}",
                    permissions=["event.list"],
                ),
                metadata=md,
                timeout=10,
            )
            credential_id = created.credential.id
            journal.secrets[credential_id] = [created.secret]
            journal.kinds[credential_id] = kind
            for _ in range(2):
                journal.pending = ("rotate", credential_id)
                rotated = admin.RotateCredential(
                    admin_pb2.RotateCredentialRequest(id=credential_id, overlap_seconds=OVERLAP_SECONDS),
                    metadata=md,
                    timeout=10,
                )
                journal.secrets[credential_id].append(rotated.secret)
            journal.pending = ("deactivate", credential_id)
            admin.DeactivateCredential(
                admin_pb2.DeactivateCredentialRequest(id=credential_id), metadata=md, timeout=10
            )
            journal.deactivated.add(credential_id)
            journal.pending = None
    except grpc.RpcError as exc:
        # The process was killed: the write in flight is in doubt, everything before it was acknowledged.
        journal.ended_with = exc.code()


def _load_then_kill(server: WatchwordProcess) -> list[Journal]:
    tenant = make_tenant(server)
    journals = [Journal() for _ in range(WORKERS)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_write_loop, args=(server, tenant.organization_id, j, stop)) for j in journals
    ]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS)
    server.signal(signal.SIGKILL)  # mid-stream: the workers are between requests or inside one
    assert server.wait(10) == -signal.SIGKILL
    stop.set()
    for thread in threads:
        thread.join(30)
    assert sum(len(j.secrets) for j in journals) >= WORKERS, (
        "too few writes before the kill to prove anything"
    )
    return journals


def _check_rows(url: str, key: MasterKey, journals: list[Journal]) -> None:
    engine = sa.create_engine(database.sync_url(url))
    try:
        with engine.connect() as connection:
            rows = {
                row.id: row for row in connection.execute(sa.text("SELECT * FROM credentials")).mappings()
            }
            orphans = connection.execute(
                sa.text(
                    "SELECT count(*) FROM credentials c LEFT JOIN organizations o "
                    "ON o.id = c.organization_id WHERE c.organization_id IS NOT NULL AND o.id IS NULL"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert orphans == 0
    known = {credential_id for journal in journals for credential_id in journal.secrets}
    in_doubt_creates = sum(1 for journal in journals if journal.pending == ("create", ""))
    bootstrap = {cid for cid, row in rows.items() if row["name"] == "bootstrap admin token"}
    unexpected = set(rows) - known - bootstrap
    # A create in flight may have committed (its answer was lost); nothing else may appear.
    assert len(unexpected) <= in_doubt_creates, unexpected
    for credential_id, row in rows.items():
        # Every row is whole, whoever wrote it.
        assert len(row["secret_hash"]) == 64, row
        assert row["secret_hint"]
        assert row["name"]
        assert (row["previous_secret_hash"] is None) == (row["previous_secret_valid_until"] is None), row
        if row["previous_secret_hash"] is not None:
            assert row["rotated_at"] is not None, row
        sealed = row["kind"] == TENANT_SECRET
        assert (row["sealed_secret"] is not None) == sealed, row
        if sealed:
            opened = key.open(bytes(row["sealed_secret"]), sealing_purpose(credential_id)).decode("ascii")
            assert _digest(opened) == row["secret_hash"], "the sealed secret and its hash disagree"
            if row["previous_secret_hash"] is not None:
                previous = key.open(bytes(row["previous_sealed_secret"]), sealing_purpose(credential_id))
                assert _digest(previous.decode("ascii")) == row["previous_secret_hash"]
    for journal in journals:
        for credential_id, secrets in journal.secrets.items():
            row = rows.get(credential_id)
            assert row is not None, f"acknowledged credential {credential_id} is gone"
            in_doubt = journal.pending[0] if journal.pending and journal.pending[1] == credential_id else None
            latest = _digest(secrets[-1])
            before_latest = _digest(secrets[-2]) if len(secrets) > 1 else None
            if row["secret_hash"] == latest:
                # The last acknowledged rotation is what the row holds, with the secret it replaced.
                assert row["previous_secret_hash"] == before_latest, row
            else:
                # Only a rotation in flight may have replaced it, keeping the acknowledged one as previous.
                assert in_doubt == "rotate", row
                assert row["previous_secret_hash"] == latest, row
                assert row["secret_hash"] not in {_digest(s) for s in secrets}
            if credential_id in journal.deactivated:
                assert row["deactivated_at"] is not None
            elif in_doubt != "deactivate":
                assert row["deactivated_at"] is None, row


def _authenticate(server: WatchwordProcess, secret: str) -> str:
    response = server.auth().Authenticate(
        auth_pb2.AuthenticateRequest(
            credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=secret))
        ),
        timeout=10,
    )
    return "ok" if response.HasField("principal") else response.refusal.reason


def _check_service(server: WatchwordProcess, journals: list[Journal]) -> None:
    """The restarted server answers from the recovered rows: acknowledged secrets work until deactivated,
    and admin writes work again."""
    for journal in journals:
        for credential_id, secrets in journal.secrets.items():
            if journal.kinds[credential_id] != API_KEY:
                continue  # tenant signing secrets sign JWTs; they are checked through their rows above
            answer = _authenticate(server, secrets[-1])
            if credential_id in journal.deactivated:
                assert answer == reasons.CREDENTIAL_DEACTIVATED
            elif journal.pending == ("deactivate", credential_id):
                assert answer in ("ok", reasons.CREDENTIAL_DEACTIVATED)
            else:
                assert answer == "ok", (credential_id, answer)
    tenant = make_tenant(server, "after-crash")
    created = server.admin().CreateCredential(
        admin_pb2.CreateCredentialRequest(kind=API_KEY, organization_id=tenant.organization_id, name="after"),
        metadata=server.admin_metadata,
        timeout=10,
    )
    assert _authenticate(server, created.secret) == "ok"


def test_kill_9_during_admin_writes_on_sqlite_leaves_a_consistent_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = WatchwordProcess(data).start()
    try:
        journals = _load_then_kill(first)
    finally:
        first.stop()
    with sqlite3.connect(data / "watchword.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    url = f"sqlite:///{data / 'watchword.db'}"
    _check_rows(url, MasterKey.from_file(data / "master.key"), journals)
    with WatchwordProcess(data) as second:
        second.admin_token = first.admin_token
        _check_service(second, journals)


@pytest.fixture
def postgres_database(postgres: PostgresServer, tmp_path: Path) -> dict[str, str]:
    database = f"crash_{os.getpid()}_{time.monotonic_ns()}"
    return shared_database_settings(postgres, database, tmp_path, **PRODUCTION)


def test_kill_9_during_admin_writes_on_postgresql_leaves_a_consistent_store(
    postgres_database: dict[str, str], tmp_path: Path
) -> None:
    env = postgres_database
    first = WatchwordProcess(tmp_path / "unused", env=env).start()
    try:
        journals = _load_then_kill(first)
    finally:
        first.stop()
    _check_rows(
        env["WATCHWORD_DATABASE_URL"], MasterKey.from_file(Path(env["WATCHWORD_MASTER_KEY_FILE"])), journals
    )
    with WatchwordProcess(tmp_path / "unused", env=env) as second:
        second.admin_token = first.admin_token
        _check_service(second, journals)
