"""What one AuthorizeBatch can make the store do (issue #12, section 8: T7).

A batch of 1,000 well-formed but unknown keys once cost one store query per entry. The credentials a
batch's opaque secrets name are now looked up together (one query), and the distinct credentials one batch
may carry are bounded (`max_batch_credentials`), refused as INVALID_ARGUMENT on field `entries`.
Store queries are counted with an SQLAlchemy event listener on the real (SQLite) engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from test_bad_input import expect_invalid_field

from watchword import reasons, secret_format
from watchword.api.auth import AuthServicer
from watchword.api.errors import FieldError
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind
from watchword.extract import TransportSettings
from watchword.identify.cache import TtlCache
from watchword.pipeline import Pipeline
from watchword.v1 import auth_pb2, common_pb2

from support.api_keys import store_with_api_keys
from support.server import WatchwordProcess

MASTER = MasterKey.from_text(generate(), "test")


@dataclass
class Batching:
    servicer: AuthServicer
    pipeline: Pipeline
    organization_id: str
    secrets: list[str]
    queries: list[str]  # every SQL statement that read the credentials table

    def credential_queries(self) -> int:
        return len(self.queries)


@pytest.fixture
async def batching(tmp_path: Path) -> AsyncIterator[Batching]:
    store, organization_id, secrets = await store_with_api_keys(tmp_path, MASTER)
    pipeline = Pipeline(store, Catalogue.load(), TransportSettings(), MASTER, cache_ttl=30.0)
    queries: list[str] = []

    def counted(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM credentials" in statement:
            queries.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", counted)
    servicer = AuthServicer(pipeline, 8192, 256, 1000, max_batch_credentials=100)
    yield Batching(servicer, pipeline, organization_id, secrets, queries)
    await store.close()


def unknown_key() -> str:
    return secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())


def entry(token: str, organization_id: str) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token)),
        action="application.list",
        resource=auth_pb2.Resource(organization_id=organization_id),
    )


async def batch(batching: Batching, tokens: list[str]) -> list[auth_pb2.AuthorizeResponse]:
    request = auth_pb2.AuthorizeBatchRequest(entries=[entry(t, batching.organization_id) for t in tokens])
    response = await batching.servicer.AuthorizeBatch(request, None)  # type: ignore[arg-type]
    return list(response.results)


async def test_t7_a_batch_of_1000_unknown_keys_costs_one_store_query(batching: Batching) -> None:
    unknown = [unknown_key() for _ in range(100)]
    results = await batch(batching, [unknown[index % 100] for index in range(1000)])
    assert {result.refusal.reason for result in results} == {reasons.CREDENTIAL_UNKNOWN}
    assert batching.credential_queries() == 1, batching.queries
    # The misses are remembered: the same batch again costs no query at all.
    await batch(batching, unknown)
    assert batching.credential_queries() == 1


async def test_t7_known_unknown_and_malformed_credentials_of_a_batch_share_one_query(
    batching: Batching,
) -> None:
    tokens = [*batching.secrets, unknown_key(), unknown_key(), "garbage", "a.b.c", *batching.secrets]
    results = await batch(batching, tokens * 50)
    allowed = [result.decision.allowed for result in results[: len(tokens)]]
    assert allowed == [True, True, True, False, False, False, False, True, True, True]
    assert batching.credential_queries() == 1, batching.queries


async def test_t7_one_call_per_entry_still_costs_one_query_per_unknown_key(batching: Batching) -> None:
    """The measure itself: without a batch, each unknown key is its own query (so the count is real)."""
    for token in [unknown_key() for _ in range(5)]:
        request = entry(token, batching.organization_id)
        await batching.servicer.Authorize(request, None)  # type: ignore[arg-type]
    assert batching.credential_queries() == 5


async def test_t7_more_distinct_credentials_than_the_bound_is_refused_before_any_query(
    batching: Batching,
) -> None:
    with pytest.raises(FieldError) as refused:
        await batch(batching, [unknown_key() for _ in range(101)])
    assert refused.value.field == "entries"
    assert "at most 100 distinct credentials" in str(refused.value)
    assert batching.credential_queries() == 0
    results = await batch(batching, [unknown_key() for _ in range(100)] * 10)  # at the bound: decided
    assert len(results) == 1000


async def test_t7_a_change_during_a_batch_lookup_is_not_overwritten() -> None:
    values = {"a": "old", "b": "old"}
    release = asyncio.Event()

    async def load_many(keys: list[str]) -> dict[str, str]:
        seen = {key: values[key] for key in keys if key in values}
        await release.wait()
        return seen

    async def load(key: str) -> str | None:
        return values.get(key)

    cache: TtlCache[str] = TtlCache(load, ttl=30.0)
    loading = asyncio.ensure_future(cache.load_many(["a", "b", "c"], load_many))
    await asyncio.sleep(0)
    values["a"] = "new"
    cache.invalidate("a")  # committed while the batch's query ran
    release.set()
    await loading
    assert await cache.get("a") == "new"
    # Nothing that query saw was kept (as for a single load): "b" and "c" again, "a" is fresh.
    assert await cache.load_many(["a", "b", "c"], load_many) == 2
    assert await cache.load_many(["a", "b", "c"], load_many) == 0, "fresh entries are not loaded again"


# ---- through the real server ----

BOUND = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    env = {"WATCHWORD_MAX_BATCH_CREDENTIALS": str(BOUND)}
    with WatchwordProcess(tmp_path_factory.mktemp("batch") / "data", env=env) as process:
        yield process


def test_t7_the_distinct_credential_bound_is_invalid_argument_on_entries(server: WatchwordProcess) -> None:
    keys = [unknown_key() for _ in range(BOUND + 1)]
    over = auth_pb2.AuthorizeBatchRequest(entries=[entry(key, "org") for key in keys])
    refused = expect_invalid_field(lambda: server.auth().AuthorizeBatch(over, timeout=10), "entries")
    assert f"at most {BOUND} distinct credentials" in (refused.details() or "")
    at = auth_pb2.AuthorizeBatchRequest(entries=[entry(key, "org") for key in keys[:BOUND]] * 300)
    results = server.auth().AuthorizeBatch(at, timeout=10).results
    assert len(results) == BOUND * 300
    assert {result.refusal.reason for result in results} == {reasons.CREDENTIAL_UNKNOWN}
