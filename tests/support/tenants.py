"""An organization with two applications, and credentials created through a real server's admin API."""

from __future__ import annotations

from dataclasses import dataclass

from watchword.v1 import admin_pb2, common_pb2

from support.server import WatchwordProcess

APPLICATION_SECRET = common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET
API_KEY = common_pb2.CREDENTIAL_KIND_API_KEY
STATIC_TOKEN = common_pb2.CREDENTIAL_KIND_STATIC_TOKEN


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
