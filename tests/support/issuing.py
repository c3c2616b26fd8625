"""The real grants (I1-I3) over an SQLite store, in process: no server, no network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchword.api import new_credential
from watchword.config import Settings
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.extract import TransportSettings
from watchword.issue.grants import Grants
from watchword.issue.keyring import IssuingKeyring
from watchword.issue.tokens import TokenSettings
from watchword.pipeline import JwtSettings, Pipeline
from watchword.store import database
from watchword.store.repository import Store
from watchword.v1 import admin_pb2

AUDIENCE = "urn:watchword:api"
ISSUER = "urn:watchword"


@dataclass
class Issuing:
    store: Store
    catalogue: Catalogue
    master: MasterKey
    keyring: IssuingKeyring
    pipeline: Pipeline
    grants: Grants
    organization_id: str

    async def register(self, **fields: Any) -> tuple[str, str]:
        """A credential of this organization, as CreateCredential makes it: (its id, its secret)."""
        request = admin_pb2.CreateCredentialRequest(
            name="issuing", organization_id=self.organization_id, **fields
        )
        row, secret = new_credential.build(request, self.catalogue, self.master)
        await self.store.add_credential(row)
        return row.id, secret


async def issuing(directory: Path, token_endpoint: str = "https://watchword.test/oauth/token") -> Issuing:
    url = f"sqlite:///{directory / 'issuing.db'}"
    await database.migrate_async(url)
    store = Store.connect(url)
    catalogue = Catalogue.load()
    master = MasterKey.from_text(generate(), "test")
    jwt_settings = JwtSettings(token_endpoint=token_endpoint)
    pipeline = Pipeline(store, catalogue, TransportSettings(), master, jwt_settings)
    keyring = IssuingKeyring.from_settings(store, master, Settings(data_dir=directory))
    await keyring.load()
    pipeline.signing_keys.local = keyring.active
    grants = Grants(pipeline, keyring, TokenSettings(issuer=ISSUER, audience=AUDIENCE))
    organization = await store.create_organization("issuing")
    return Issuing(store, catalogue, master, keyring, pipeline, grants, organization.id)
