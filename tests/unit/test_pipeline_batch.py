"""T7 batches: each entry decided on its own, each distinct credential verified once, the bound kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from watchword import reasons
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import HttpParts, Resource
from watchword.extract import TransportSettings
from watchword.pipeline import Memo, Pipeline

from support.api_keys import store_with_api_keys

MASTER = MasterKey.from_text(generate(), "test")


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[tuple[Pipeline, str, list[str]]]:
    store, organization_id, secrets = await store_with_api_keys(tmp_path, MASTER)
    yield Pipeline(store, Catalogue.load(), TransportSettings(), MASTER), organization_id, secrets
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
