"""Shared fixtures: a real Watchword server on a free loopback port, and helpers to populate it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from watchword.v1 import admin_pb2, common_pb2

from support.server import WatchwordProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    """One server for the session's integration tests; tests create their own organizations."""
    with WatchwordProcess(tmp_path_factory.mktemp("watchword") / "data") as process:
        yield process


@dataclass(frozen=True)
class Tenant:
    organization_id: str
    application_id: str
    other_application_id: str


def make_tenant(server: WatchwordProcess, name: str = "acme") -> Tenant:
    admin = server.admin()
    md = server.admin_metadata
    organization = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name=name), metadata=md)
    first = admin.CreateApplication(
        admin_pb2.CreateApplicationRequest(organization_id=organization.id, name="billing"), metadata=md
    )
    second = admin.CreateApplication(
        admin_pb2.CreateApplicationRequest(organization_id=organization.id, name="shipping"), metadata=md
    )
    return Tenant(organization.id, first.id, second.id)


def create_credential(server: WatchwordProcess, **fields: object) -> admin_pb2.CreateCredentialResponse:
    return server.admin().CreateCredential(
        admin_pb2.CreateCredentialRequest(**fields), metadata=server.admin_metadata
    )


APPLICATION_SECRET = common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET
API_KEY = common_pb2.CREDENTIAL_KIND_API_KEY
STATIC_TOKEN = common_pb2.CREDENTIAL_KIND_STATIC_TOKEN


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real PostgreSQL server (Debian's package, installed by .ci/run); fails loudly when missing."""
    from support.postgres import PostgresServer

    with PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server
