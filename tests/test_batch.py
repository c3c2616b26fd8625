"""T7 batches: each entry decided on its own, each distinct credential verified once, the bound kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from watchword import reasons
from watchword.api import new_credential
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import HttpParts, Resource
from watchword.extract import TransportSettings
from watchword.pipeline import Memo, Pipeline
from watchword.store import database
from watchword.store.repository import Store
from watchword.v1 import admin_pb2, common_pb2

MASTER = MasterKey.from_text(generate(), "test")


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[tuple[Pipeline, str, list[str]]]:
    url = f"sqlite:///{tmp_path / 'batch.db'}"
    await database.migrate_async(url)
    store = Store.connect(url)
    organization = await store.create_organization("firehose")
    secrets = []
    for _ in range(3):
        request = admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_API_KEY,
            organization_id=organization.id,
            name="k",
            permissions=["application.list"],
        )
        row, secret = new_credential.build(request, Catalogue.load(), MASTER)
        await store.add_credential(row)
        secrets.append(secret)
    yield Pipeline(store, Catalogue.load(), TransportSettings(), MASTER), organization.id, secrets
    await store.close()


def bearer(token: str) -> HttpParts:
    return HttpParts(method="POST", path="/", headers=(("Authorization", f"Bearer {token}"),))


async def test_t7_a_batch_of_1000_entries_verifies_each_distinct_credential_once(pipeline) -> None:
    engine, organization_id, secrets = pipeline
    memo: Memo = {}
    resource = Resource(organization_id=organization_id)
    outcomes = [
        await engine.authorize(bearer(secrets[index % 3]), "application.list", resource, memo=memo)
        for index in range(1000)
    ]
    assert all(outcome.decision.allowed for outcome in outcomes)
    assert engine.identifications == 3
    assert len(memo) == 3


async def test_t7_one_bad_credential_never_spoils_the_others(pipeline) -> None:
    engine, organization_id, secrets = pipeline
    memo: Memo = {}
    resource = Resource(organization_id=organization_id)
    sources = [bearer(secrets[0]), bearer("wwak_garbage"), bearer(secrets[1]), HttpParts()]
    outcomes = [await engine.authorize(s, "application.list", resource, memo=memo) for s in sources]
    assert [o.decision.allowed for o in outcomes] == [True, False, True, False]
    assert outcomes[1].refusal is not None
    assert outcomes[1].refusal.reason == reasons.CREDENTIAL_MALFORMED
    assert outcomes[3].refusal is not None
    assert outcomes[3].refusal.reason == reasons.CREDENTIAL_MISSING


async def test_without_a_memo_each_call_verifies_again(pipeline) -> None:
    engine, organization_id, secrets = pipeline
    for _ in range(5):
        await engine.authorize(
            bearer(secrets[0]), "application.list", Resource(organization_id=organization_id)
        )
    assert engine.identifications == 5
