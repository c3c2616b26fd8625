"""Key hygiene across replicas on one PostgreSQL: the uses counted by every replica add up in one row per
day, and a leaked C5 API key reported to one replica is refused by every replica within a second (the
change feed, with caches that would otherwise keep it for 30 s)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from watchword import reasons
from watchword.crypto.master_key import generate
from watchword.hygiene.secret_scanning import REPORT_PATH
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.cli import migrate
from support.postgres import PostgresServer
from support.server import WatchwordProcess

REPLICAS = 2
KEY_ID = "scanner"
LIMIT_SECONDS = 1.0


@pytest.fixture(scope="module")
def scanner_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_document(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    entry = {"key_identifier": KEY_ID, "key": pem.decode("ascii"), "is_current": True}
    path.write_text(json.dumps({"public_keys": [entry]}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def replicas(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory, scanner_key
) -> Iterator[list[WatchwordProcess]]:
    keys = key_document(tmp_path_factory.mktemp("scanner") / "keys.json", scanner_key)
    env = {
        "WATCHWORD_DATABASE_URL": postgres.create_database(f"hygiene_{uuid.uuid4().hex[:8]}"),
        "WATCHWORD_MASTER_KEY": generate(),
        "WATCHWORD_MODE": "production",
        "WATCHWORD_ALLOW_NON_HTTPS_ISSUER": "true",
        "WATCHWORD_CACHE_TTL_SECONDS": "30",
        "WATCHWORD_USAGE_FLUSH_SECONDS": "0.2",
        "WATCHWORD_SECRET_SCANNING_PUBLIC_KEYS_FILE": str(keys),
    }
    migrate(env)
    with contextlib.ExitStack() as stack:
        started: list[WatchwordProcess] = []
        for number in range(REPLICAS):
            data = tmp_path_factory.mktemp(f"replica{number}") / "data"
            started.append(stack.enter_context(WatchwordProcess(data, env=env)))
        for replica in started[1:]:
            replica.admin_token = started[0].admin_token
        yield started


def api_key(replica: WatchwordProcess) -> tuple[str, str]:
    admin, metadata = replica.admin(), replica.admin_metadata
    organization = admin.CreateOrganization(
        admin_pb2.CreateOrganizationRequest(name="acme"), metadata=metadata
    )
    request = admin_pb2.CreateCredentialRequest(
        kind=common_pb2.CREDENTIAL_KIND_API_KEY, organization_id=organization.id, name="k"
    )
    created = admin.CreateCredential(request, metadata=metadata)
    return created.credential.id, created.secret


def authenticate(replica: WatchwordProcess, secret: str) -> auth_pb2.AuthenticateResponse:
    source = common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=secret))
    return replica.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=source), timeout=10)


def test_c5_uses_on_every_replica_add_up(replicas: list[WatchwordProcess]) -> None:
    credential_id, secret = api_key(replicas[0])
    for count, replica in zip((5, 8), replicas, strict=True):
        for _ in range(count):
            assert authenticate(replica, secret).HasField("principal")
    request = admin_pb2.GetCredentialRequest(id=credential_id)
    deadline = time.monotonic() + 15
    while True:
        credential = replicas[1].admin().GetCredential(request, metadata=replicas[1].admin_metadata)
        if credential.uses_last_30_days >= 13 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert credential.uses_last_30_days == 13
    assert [day.uses for day in credential.daily_usage] == [13]


def test_c5_a_leak_reported_to_one_replica_is_refused_by_all(
    replicas: list[WatchwordProcess], scanner_key
) -> None:
    _, secret = api_key(replicas[0])
    for replica in replicas:
        assert authenticate(replica, secret).HasField("principal")  # cached for 30 s on each
    body = json.dumps(
        [{"token": secret, "type": "watchword_api_key", "url": "", "source": "content"}]
    ).encode()
    signature = base64.b64encode(scanner_key.sign(body, ec.ECDSA(hashes.SHA256()))).decode("ascii")
    headers = {"Github-Public-Key-Identifier": KEY_ID, "Github-Public-Key-Signature": signature}
    url = f"http://127.0.0.1:{replicas[1].http_port}{REPORT_PATH}"
    answer = httpx.post(url, content=body, headers=headers, timeout=10)
    reported_at = time.monotonic()
    assert answer.json()[0]["label"] == "true_positive"
    pending, took = set(range(REPLICAS)), 0.0
    while pending and time.monotonic() - reported_at < LIMIT_SECONDS + 2:
        for index in list(pending):
            if authenticate(replicas[index], secret).refusal.reason == reasons.CREDENTIAL_DEACTIVATED:
                pending.discard(index)
                took = time.monotonic() - reported_at
        time.sleep(0.01)
    assert not pending, f"replicas {pending} still accept the leaked key"
    assert took <= LIMIT_SECONDS, f"the slowest replica refused after {took:.3f}s"
