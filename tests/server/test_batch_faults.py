"""T7: an unexpected fault while deciding one batch entry is that entry's refusal, never the others'.

The fault injected in the real server is a corrupted stored record (a permission that is no string): the
row loads, and verifying the credential raises inside Watchword, as a far-future `exp` once did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from watchword import reasons
from watchword.api.auth import AuthServicer
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import Resource
from watchword.extract import TransportSettings
from watchword.pipeline import Pipeline
from watchword.store import database
from watchword.store.repository import Store
from watchword.v1 import auth_pb2, common_pb2

from support.server import WatchwordProcess
from support.tenants import API_KEY, Tenant, create_credential, make_tenant


def bearer_source(token: str) -> common_pb2.CredentialSource:
    header = common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")
    return common_pb2.CredentialSource(http=common_pb2.HttpRequest(method="GET", headers=[header]))


def entry(secret: str, tenant: Tenant) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=bearer_source(secret),
        action="application.list",
        resource=auth_pb2.Resource(organization_id=tenant.organization_id),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    with WatchwordProcess(tmp_path_factory.mktemp("faults") / "data") as process:
        yield process


def corrupt_permissions(server: WatchwordProcess, credential_id: str) -> None:
    """What a bad migration or a hand edit could leave: a permission that is a list, not a string."""
    with sqlite3.connect(server.data_dir / "watchword.db") as db:
        db.execute("UPDATE credentials SET permissions = '[[\"x\"]]' WHERE id = ?", (credential_id,))


def test_t7_a_fault_in_one_entry_is_its_refusal_and_the_other_organizations_are_decided(server) -> None:
    broken_tenant, other_tenant = make_tenant(server, "broken"), make_tenant(server, "other")
    fields = {"kind": API_KEY, "name": "k", "permissions": ["application.list"]}
    broken = create_credential(server, organization_id=broken_tenant.organization_id, **fields)
    healthy = create_credential(server, organization_id=other_tenant.organization_id, **fields)
    corrupt_permissions(server, broken.credential.id)
    logged_before = len(server.output)
    batch = [
        entry(healthy.secret, other_tenant),
        entry(broken.secret, broken_tenant),
        entry(healthy.secret, other_tenant),
        entry(broken.secret, broken_tenant),
    ]
    answer = server.auth().AuthorizeBatch(auth_pb2.AuthorizeBatchRequest(entries=batch), timeout=10)
    allowed = [result.decision.allowed for result in answer.results]
    assert allowed == [True, False, True, False]
    for failed in (answer.results[1], answer.results[3]):
        assert failed.refusal.reason == reasons.INTERNAL_ERROR
        assert "incident" in failed.refusal.message
    # Logged once with its traceback (the second entry reuses the first one's refusal), secret never.
    log = "".join(server.output[logged_before:])
    assert log.count("Traceback") == 1
    assert log.count("internal error verifying a batch entry's credential") == 1
    assert answer.results[1].refusal.message.split()[-1].rstrip(")") in log
    assert broken.secret not in log
    assert healthy.secret not in log


def test_t7_the_same_fault_through_authorize_is_still_an_internal_status(server) -> None:
    """Outside a batch the call is the entry: INTERNAL with an incident id, as every unexpected fault."""
    tenant = make_tenant(server, "single")
    key = create_credential(
        server,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="k",
        permissions=["application.list"],
    )
    corrupt_permissions(server, key.credential.id)
    with pytest.raises(grpc.RpcError) as refused:
        server.auth().Authorize(entry(key.secret, tenant), timeout=10)
    assert refused.value.code() is grpc.StatusCode.INTERNAL


class FaultyPipeline(Pipeline):
    """The real pipeline, with a fault injected after authentication for one application."""

    async def resolve(self, resource: Resource) -> Resource | None:
        if resource.application_id == "app-faulty":
            raise RuntimeError("injected fault")
        return await super().resolve(resource)


@pytest.fixture
async def servicer(tmp_path: Path) -> Iterator[tuple[AuthServicer, str, str]]:
    from watchword.api import new_credential
    from watchword.v1 import admin_pb2

    master = MasterKey.from_text(generate(), "test")
    url = f"sqlite:///{tmp_path / 'batch.db'}"
    await database.migrate_async(url)
    store = Store.connect(url)
    organization = await store.create_organization("o")
    request = admin_pb2.CreateCredentialRequest(
        kind=API_KEY, organization_id=organization.id, name="k", permissions=["application.list"]
    )
    row, secret = new_credential.build(request, Catalogue.load(), master)
    await store.add_credential(row)
    pipeline = FaultyPipeline(store, Catalogue.load(), TransportSettings(), master)
    yield AuthServicer(pipeline, 8192, 256, 1000), secret, organization.id
    await store.close()


async def test_t7_a_fault_after_authentication_denies_only_its_entry(servicer, caplog) -> None:
    auth, secret, organization_id = servicer
    good = auth_pb2.AuthorizeRequest(
        credential=bearer_source(secret),
        action="application.list",
        resource=auth_pb2.Resource(organization_id=organization_id),
    )
    faulty = auth_pb2.AuthorizeRequest()
    faulty.CopyFrom(good)
    faulty.resource.application_id = "app-faulty"
    request = auth_pb2.AuthorizeBatchRequest(entries=[faulty, good, auth_pb2.AuthorizeRequest()])
    answer = await auth.AuthorizeBatch(request, None)  # type: ignore[arg-type]
    reasons_given = [result.decision.reason for result in answer.results]
    assert reasons_given == [reasons.INTERNAL_ERROR, reasons.ALLOWED, reasons.ENTRY_INVALID]
    faults = [record for record in caplog.records if record.exc_info]
    assert len(faults) == 1
    assert secret not in caplog.text
