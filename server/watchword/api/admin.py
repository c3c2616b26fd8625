"""AdminService: organizations, applications, memberships and inbound credentials.

Validation errors raise FieldError (INVALID_ARGUMENT naming the field); the store's NotFoundError
becomes NOT_FOUND. Secrets appear only in Create/Rotate answers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc

from watchword import secret_format
from watchword.api import convert, errors
from watchword.api.errors import FieldError
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind
from watchword.store import models
from watchword.store.repository import InvalidPageTokenError, NotFoundError, Page, Store
from watchword.v1 import admin_pb2, admin_pb2_grpc, common_pb2

Context = grpc.aio.ServicerContext

T = TypeVar("T")

MAX_NAME = 200
MAX_PATTERNS = 100
MAX_OVERLAP = timedelta(days=30)

# Kinds whose secret is only ever compared with a stored hash, so they can be minted today. Tenant
# signing secrets, connectors and OAuth clients need their secret recoverable (to check HMACs), which
# arrives with their verifiers.
MINTABLE_KINDS = frozenset(
    {
        CredentialKind.APPLICATION_SECRET,
        CredentialKind.STATIC_TOKEN,
        CredentialKind.API_KEY,
        CredentialKind.ADMIN_TOKEN,
    }
)
GRANT_KINDS = frozenset({CredentialKind.STATIC_TOKEN, CredentialKind.API_KEY})


def organization_to_proto(row: models.Organization) -> admin_pb2.Organization:
    return admin_pb2.Organization(id=row.id, name=row.name, created_at=convert.timestamp(row.created_at))


def application_to_proto(row: models.Application) -> admin_pb2.Application:
    return admin_pb2.Application(
        id=row.id,
        organization_id=row.organization_id,
        name=row.name,
        created_at=convert.timestamp(row.created_at),
    )


def membership_to_proto(row: models.Membership) -> admin_pb2.Membership:
    return admin_pb2.Membership(
        organization_id=row.organization_id, user_id=row.user_id, roles=list(row.roles)
    )


def credential_to_proto(row: models.Credential) -> admin_pb2.Credential:
    return admin_pb2.Credential(
        id=row.id,
        kind=row.kind,
        organization_id=row.organization_id or "",
        application_id=row.application_id or "",
        name=row.name,
        permissions=list(row.permissions),
        event_types_allowed=list(row.event_types_allowed),
        event_types_denied=list(row.event_types_denied),
        basic_auth_enabled=row.basic_auth_enabled,
        expires_at=convert.timestamp(row.expires_at),
        created_at=convert.timestamp(row.created_at),
        deactivated_at=convert.timestamp(row.deactivated_at),
        rotated_at=convert.timestamp(row.rotated_at),
        previous_secret_valid_until=convert.timestamp(row.previous_secret_valid_until),
        algorithms=list(row.algorithms),
        client_auth_method=row.client_auth_method,
        public_jwk=row.public_jwk,
        secret_hint=row.secret_hint,
    )


def _patterns(values: Sequence[str], field: str) -> list[str]:
    if len(values) > MAX_PATTERNS:
        raise FieldError(field, f"at most {MAX_PATTERNS} patterns")
    return [
        convert.required(value, f"{field}[{index}]", convert.MAX_ID) for index, value in enumerate(values)
    ]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, store: Store, catalogue: Catalogue) -> None:
        self._store = store
        self._catalogue = catalogue

    # ---- organizations ----

    async def CreateOrganization(
        self, request: admin_pb2.CreateOrganizationRequest, context: Context
    ) -> admin_pb2.Organization:
        name = convert.required(request.name, "name", MAX_NAME)
        return organization_to_proto(await self._store.create_organization(name))

    async def GetOrganization(
        self, request: admin_pb2.GetOrganizationRequest, context: Context
    ) -> admin_pb2.Organization:
        row = await self._store.get_organization(convert.required(request.id, "id", convert.MAX_ID))
        if row is None:
            await errors.not_found(context, "organization not found")
        return organization_to_proto(row)

    async def ListOrganizations(
        self, request: admin_pb2.ListOrganizationsRequest, context: Context
    ) -> admin_pb2.ListOrganizationsResponse:
        page = await _listing(self._store.list_organizations(request.page_size, request.page_token))
        return admin_pb2.ListOrganizationsResponse(
            organizations=[organization_to_proto(row) for row in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteOrganization(
        self, request: admin_pb2.DeleteOrganizationRequest, context: Context
    ) -> admin_pb2.DeleteOrganizationResponse:
        await _found(
            context, self._store.delete_organization(convert.required(request.id, "id", convert.MAX_ID))
        )
        return admin_pb2.DeleteOrganizationResponse()

    # ---- applications ----

    async def CreateApplication(
        self, request: admin_pb2.CreateApplicationRequest, context: Context
    ) -> admin_pb2.Application:
        organization_id = convert.required(request.organization_id, "organization_id", convert.MAX_ID)
        name = convert.required(request.name, "name", MAX_NAME)
        return application_to_proto(
            await _found(context, self._store.create_application(organization_id, name))
        )

    async def GetApplication(
        self, request: admin_pb2.GetApplicationRequest, context: Context
    ) -> admin_pb2.Application:
        row = await self._store.get_application(convert.required(request.id, "id", convert.MAX_ID))
        if row is None:
            await errors.not_found(context, "application not found")
        return application_to_proto(row)

    async def ListApplications(
        self, request: admin_pb2.ListApplicationsRequest, context: Context
    ) -> admin_pb2.ListApplicationsResponse:
        organization_id = convert.required(request.organization_id, "organization_id", convert.MAX_ID)
        listing = self._store.list_applications(organization_id, request.page_size, request.page_token)
        page = await _listing(_found(context, listing))
        return admin_pb2.ListApplicationsResponse(
            applications=[application_to_proto(row) for row in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteApplication(
        self, request: admin_pb2.DeleteApplicationRequest, context: Context
    ) -> admin_pb2.DeleteApplicationResponse:
        await _found(
            context, self._store.delete_application(convert.required(request.id, "id", convert.MAX_ID))
        )
        return admin_pb2.DeleteApplicationResponse()

    # ---- memberships ----

    async def SetMembership(
        self, request: admin_pb2.SetMembershipRequest, context: Context
    ) -> admin_pb2.Membership:
        membership = request.membership
        organization_id = convert.required(
            membership.organization_id, "membership.organization_id", convert.MAX_ID
        )
        user_id = convert.required(membership.user_id, "membership.user_id", convert.MAX_ID)
        unknown = sorted(set(membership.roles) - set(self._catalogue.roles))
        if unknown:
            raise FieldError(
                "membership.roles", f"unknown role(s) {unknown}; known: {sorted(self._catalogue.roles)}"
            )
        row = await _found(
            context, self._store.set_membership(organization_id, user_id, sorted(set(membership.roles)))
        )
        return membership_to_proto(row)

    async def ListMemberships(
        self, request: admin_pb2.ListMembershipsRequest, context: Context
    ) -> admin_pb2.ListMembershipsResponse:
        organization_id = convert.required(request.organization_id, "organization_id", convert.MAX_ID)
        listing = self._store.list_memberships(organization_id, request.page_size, request.page_token)
        page = await _listing(_found(context, listing))
        return admin_pb2.ListMembershipsResponse(
            memberships=[membership_to_proto(row) for row in page.items], next_page_token=page.next_page_token
        )

    async def DeleteMembership(
        self, request: admin_pb2.DeleteMembershipRequest, context: Context
    ) -> admin_pb2.DeleteMembershipResponse:
        organization_id = convert.required(request.organization_id, "organization_id", convert.MAX_ID)
        user_id = convert.required(request.user_id, "user_id", convert.MAX_ID)
        await _found(context, self._store.delete_membership(organization_id, user_id))
        return admin_pb2.DeleteMembershipResponse()

    # ---- credentials ----

    def _new_credential(self, request: admin_pb2.CreateCredentialRequest) -> tuple[models.Credential, str]:
        try:
            kind = CredentialKind(request.kind)
        except ValueError:
            raise FieldError("kind", "must name a credential kind") from None
        if kind not in MINTABLE_KINDS:
            raise FieldError(
                "kind", f"{common_pb2.CredentialKind.Name(kind)} cannot be created by this version"
            )
        name = convert.required(request.name, "name", MAX_NAME)
        organization_id: str | None = None
        if kind is CredentialKind.ADMIN_TOKEN:
            if request.organization_id:
                raise FieldError("organization_id", "admin tokens belong to no organization")
        else:
            organization_id = convert.required(request.organization_id, "organization_id", convert.MAX_ID)
        application_id: str | None = None
        if kind is CredentialKind.APPLICATION_SECRET:
            application_id = convert.required(request.application_id, "application_id", convert.MAX_ID)
        elif request.application_id:
            raise FieldError("application_id", "only application secrets are bound to an application")
        if kind in GRANT_KINDS:
            unknown = sorted(set(request.permissions) - set(self._catalogue.actions))
            if unknown:
                raise FieldError("permissions", f"unknown action(s) {unknown}")
        elif request.permissions or request.event_types_allowed or request.event_types_denied:
            raise FieldError(
                "permissions", "only API keys and static tokens carry permissions and event patterns"
            )
        if request.basic_auth_enabled and kind is not CredentialKind.API_KEY:
            raise FieldError("basic_auth_enabled", "only API keys may be used over HTTP Basic")
        if request.algorithms or request.client_auth_method or request.public_jwk:
            raise FieldError("algorithms", "not used by this kind of credential")
        expires_at = None
        if request.HasField("expires_at"):
            expires_at = convert.from_timestamp(request.expires_at, "expires_at")
            if expires_at <= datetime.now(UTC):
                raise FieldError("expires_at", "must be in the future")
        credential_id = secret_format.new_credential_id()
        secret = secret_format.mint(kind, credential_id)
        row = models.Credential(
            id=credential_id,
            kind=int(kind),
            organization_id=organization_id,
            application_id=application_id,
            name=name,
            secret_hash=secret_format.hash_secret(secret),
            secret_hint=secret_format.hint(secret),
            permissions=sorted(set(request.permissions)),
            event_types_allowed=_patterns(request.event_types_allowed, "event_types_allowed"),
            event_types_denied=_patterns(request.event_types_denied, "event_types_denied"),
            basic_auth_enabled=request.basic_auth_enabled,
            expires_at=expires_at,
        )
        return row, secret

    async def CreateCredential(
        self, request: admin_pb2.CreateCredentialRequest, context: Context
    ) -> admin_pb2.CreateCredentialResponse:
        row, secret = self._new_credential(request)
        stored = await _found(context, self._store.add_credential(row))
        return admin_pb2.CreateCredentialResponse(credential=credential_to_proto(stored), secret=secret)

    async def _credential(self, context: grpc.aio.ServicerContext, credential_id: str) -> models.Credential:
        row = await self._store.get_credential(convert.required(credential_id, "id", convert.MAX_ID))
        if row is None:
            await errors.not_found(context, "credential not found")
        return row

    async def GetCredential(
        self, request: admin_pb2.GetCredentialRequest, context: Context
    ) -> admin_pb2.Credential:
        return credential_to_proto(await self._credential(context, request.id))

    async def ListCredentials(
        self, request: admin_pb2.ListCredentialsRequest, context: Context
    ) -> admin_pb2.ListCredentialsResponse:
        if request.kind == common_pb2.CREDENTIAL_KIND_ADMIN_TOKEN:
            organization_id = None
        else:
            organization_id = convert.required(request.organization_id, "organization_id", convert.MAX_ID)
        listing = self._store.list_credentials(
            organization_id,
            request.kind,
            convert.identifier(request.application_id, "application_id"),
            request.page_size,
            request.page_token,
        )
        page = await _listing(_found(context, listing))
        return admin_pb2.ListCredentialsResponse(
            credentials=[credential_to_proto(row) for row in page.items], next_page_token=page.next_page_token
        )

    async def DeactivateCredential(
        self, request: admin_pb2.DeactivateCredentialRequest, context: Context
    ) -> admin_pb2.Credential:
        credential_id = convert.required(request.id, "id", convert.MAX_ID)
        return credential_to_proto(await _found(context, self._store.deactivate_credential(credential_id)))

    async def DeleteCredential(
        self, request: admin_pb2.DeleteCredentialRequest, context: Context
    ) -> admin_pb2.DeleteCredentialResponse:
        await _found(
            context, self._store.delete_credential(convert.required(request.id, "id", convert.MAX_ID))
        )
        return admin_pb2.DeleteCredentialResponse()

    async def RotateCredential(
        self, request: admin_pb2.RotateCredentialRequest, context: Context
    ) -> admin_pb2.CreateCredentialResponse:
        row = await self._credential(context, request.id)
        if request.overlap_seconds < 0 or request.overlap_seconds > MAX_OVERLAP.total_seconds():
            raise FieldError("overlap_seconds", f"must be between 0 and {int(MAX_OVERLAP.total_seconds())}")
        if row.deactivated_at is not None:
            raise FieldError("id", "a deactivated credential cannot be rotated")
        now = datetime.now(UTC)
        previous_valid_until = (
            now + timedelta(seconds=request.overlap_seconds) if request.overlap_seconds else None
        )
        secret = secret_format.mint(CredentialKind(row.kind), row.id)
        rotated = await _found(
            context,
            self._store.rotate_credential(
                row.id, secret_format.hash_secret(secret), previous_valid_until, now
            ),
        )
        return admin_pb2.CreateCredentialResponse(credential=credential_to_proto(rotated), secret=secret)

    # ---- outbound credentials, signing keys, revocation: later issues ----

    CreateOutboundCredential = errors.unimplemented("CreateOutboundCredential")
    GetOutboundCredential = errors.unimplemented("GetOutboundCredential")
    ListOutboundCredentials = errors.unimplemented("ListOutboundCredentials")
    DeactivateOutboundCredential = errors.unimplemented("DeactivateOutboundCredential")
    DeleteOutboundCredential = errors.unimplemented("DeleteOutboundCredential")
    RotateOutboundCredential = errors.unimplemented("RotateOutboundCredential")
    RotateSigningKey = errors.unimplemented("RotateSigningKey")
    RevokeToken = errors.unimplemented("RevokeToken")

    async def ListSigningKeys(
        self, request: admin_pb2.ListSigningKeysRequest, context: Context
    ) -> admin_pb2.ListSigningKeysResponse:
        keys = await self._store.list_signing_keys()
        return admin_pb2.ListSigningKeysResponse(
            keys=[
                admin_pb2.SigningKey(
                    kid=key.kid,
                    algorithm=key.algorithm,
                    public_jwk=json.dumps(json.loads(key.public_jwk), sort_keys=True),
                    created_at=convert.timestamp(key.created_at),
                    active=key.active,
                    retires_at=convert.timestamp(key.retires_at),
                )
                for key in keys
            ]
        )


async def _found(context: grpc.aio.ServicerContext, call: Awaitable[T]) -> T:
    """Await a store call, answering NOT_FOUND when it names a record that does not exist."""
    try:
        return await call
    except NotFoundError as exc:
        await errors.not_found(context, f"{exc.what} not found")


async def _listing(call: Awaitable[Page[T]]) -> Page[T]:
    try:
        return await call
    except InvalidPageTokenError as exc:
        raise FieldError("page_token", str(exc)) from None
    except ValueError as exc:
        raise FieldError("page_size", str(exc)) from None
