"""A migrated SQLite store with one organization and a few API keys, for in-process pipeline tests."""

from __future__ import annotations

from pathlib import Path

from watchword.api import new_credential
from watchword.crypto.master_key import MasterKey
from watchword.decide.catalogue import Catalogue
from watchword.store.repository import Store
from watchword.v1 import admin_pb2, common_pb2

from support.sqlite import migrated_sqlite_url


async def store_with_api_keys(
    tmp_path: Path, master: MasterKey, count: int = 3
) -> tuple[Store, str, list[str]]:
    """The store, the organization's id and the keys' secrets (each key may `application.list`)."""
    url = migrated_sqlite_url(tmp_path, "batch.db")
    store = Store.connect(url)
    organization = await store.create_organization("firehose")
    secrets = []
    for _ in range(count):
        request = admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_API_KEY,
            organization_id=organization.id,
            name="k",
            permissions=["application.list"],
        )
        row, secret = new_credential.build(request, Catalogue.load(), master)
        await store.add_credential(row)
        secrets.append(secret)
    return store, organization.id, secrets
