"""AdminService: organizations, applications, memberships, inbound and outbound credentials, signing keys
and revocation. Translation only: what a call computes (a rotation's next secret, a signing key) comes
from the domain (`identify.minting`, `issue.keyring`).

Validation errors raise FieldError (INVALID_ARGUMENT naming the field); a record that does not exist is
NOT_FOUND through `_found`, whether the store raised NotFoundError or a lookup found nothing. Secrets
appear only in Create/Rotate answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
from sqlalchemy.exc import IntegrityError

from watchword.api import convert, credential_usage, errors, new_credential, outbound_admin
from watchword.api.errors import FieldError
from watchword.crypto.master_key import MasterKey
from watchword.decide.catalogue import Catalogue
from watchword.identify import minting
from watchword.identify.issuer_settings import IssuerSettings, by_issuer
from watchword.issue import signing_keys
from watchword.issue.keyring import IssuingKeyring
from watchword.store import models
from watchword.store.repository import InvalidPageTokenError, NotFoundError, Page, Store
from watchword.v1 import admin_pb2, admin_pb2_grpc, common_pb2

Context = grpc.aio.ServicerContext

T = TypeVar("T")

MAX_NAME = new_credential.MAX_NAME
MAX_ISSUER = 2048  # as an [[issuers]] table's `issuer`


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        master_key: MasterKey,
        revocation_lifetime: float = 7 * 24 * 3600,
        *,
        keyring: IssuingKeyring | None = None,
        issuers: Sequence[IssuerSettings] = (),
    ) -> None:
        # Every write announces what it changed through the store (`store.change_feed`): this replica's
        # caches drop it after commit, before the answer leaves, and the others' when the event arrives.
        self._store = store
        self._catalogue = catalogue
        self._master_key = master_key
        self._revocation_lifetime = revocation_lifetime
        # I5: without a keyring RotateSigningKey stays UNIMPLEMENTED.
        self._keyring = keyring
        # S1, S7: memberships are written for configured issuers only, in organizations bound to them.
        self._issuers = by_issuer(issuers)

    # ---- organizations ----

    async def CreateOrganization(
        self, request: admin_pb2.CreateOrganizationRequest, context: Context
    ) -> admin_pb2.Organization:
        name = convert.required(request.name, "name", MAX_NAME)
        return convert.organization_to_proto(await self._store.create_organization(name))

    async def GetOrganization(
        self, request: admin_pb2.GetOrganizationRequest, context: Context
    ) -> admin_pb2.Organization:
        organization_id = _id(request.id)
        return convert.organization_to_proto(
            await _found(context, self._store.get_organization(organization_id), "organization")
        )

    async def ListOrganizations(
        self, request: admin_pb2.ListOrganizationsRequest, context: Context
    ) -> admin_pb2.ListOrganizationsResponse:
        page = await _listing(self._store.list_organizations(request.page_size, request.page_token))
        return admin_pb2.ListOrganizationsResponse(
            organizations=[convert.organization_to_proto(row) for row in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteOrganization(
        self, request: admin_pb2.DeleteOrganizationRequest, context: Context
    ) -> admin_pb2.DeleteOrganizationResponse:
        await _found(context, self._store.delete_organization(_id(request.id)))
        return admin_pb2.DeleteOrganizationResponse()

    # ---- applications ----

    async def CreateApplication(
        self, request: admin_pb2.CreateApplicationRequest, context: Context
    ) -> admin_pb2.Application:
        organization_id = _id(request.organization_id, "organization_id")
        name = convert.required(request.name, "name", MAX_NAME)
        return convert.application_to_proto(
            await _found(context, self._store.create_application(organization_id, name))
        )

    async def GetApplication(
        self, request: admin_pb2.GetApplicationRequest, context: Context
    ) -> admin_pb2.Application:
        application_id = _id(request.id)
        return convert.application_to_proto(
            await _found(context, self._store.get_application(application_id), "application")
        )

    async def ListApplications(
        self, request: admin_pb2.ListApplicationsRequest, context: Context
    ) -> admin_pb2.ListApplicationsResponse:
        organization_id = _id(request.organization_id, "organization_id")
        listing = self._store.list_applications(organization_id, request.page_size, request.page_token)
        page = await _listing(_found(context, listing))
        return admin_pb2.ListApplicationsResponse(
            applications=[convert.application_to_proto(row) for row in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteApplication(
        self, request: admin_pb2.DeleteApplicationRequest, context: Context
    ) -> admin_pb2.DeleteApplicationResponse:
        await _found(context, self._store.delete_application(_id(request.id)))
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
        issuer = convert.identifier(membership.issuer, "membership.issuer", MAX_ISSUER)
        # Unknown ids: NOT_FOUND before the issuer is checked.
        await _found(context, self._store.get_organization(organization_id), "organization")
        issuer = self._granting_issuer(issuer, organization_id)
        row = await _found(
            context,
            self._store.set_membership(organization_id, issuer, user_id, sorted(set(membership.roles))),
        )
        return convert.membership_to_proto(row)

    async def ListMemberships(
        self, request: admin_pb2.ListMembershipsRequest, context: Context
    ) -> admin_pb2.ListMembershipsResponse:
        organization_id = _id(request.organization_id, "organization_id")
        issuer = convert.identifier(request.issuer, "issuer", MAX_ISSUER) or None
        listing = self._store.list_memberships(
            organization_id, request.page_size, request.page_token, issuer=issuer
        )
        page = await _listing(_found(context, listing))
        return admin_pb2.ListMembershipsResponse(
            memberships=[convert.membership_to_proto(row) for row in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteMembership(
        self, request: admin_pb2.DeleteMembershipRequest, context: Context
    ) -> admin_pb2.DeleteMembershipResponse:
        organization_id = _id(request.organization_id, "organization_id")
        user_id = convert.required(request.user_id, "user_id", convert.MAX_ID)
        issuer = convert.identifier(request.issuer, "issuer", MAX_ISSUER)
        if not issuer and len(self._issuers) > 1:
            raise FieldError("issuer", self._issuer_needed())
        issuer = issuer or next(iter(self._issuers), models.UNBOUND_ISSUER)
        await _found(context, self._store.delete_membership(organization_id, issuer, user_id))
        return admin_pb2.DeleteMembershipResponse()

    def _granting_issuer(self, issuer: str, organization_id: str) -> str:
        """The configured issuer a membership is written for, bound to the organization; else FieldError."""
        if not issuer and len(self._issuers) == 1:
            issuer = next(iter(self._issuers))
        if not issuer:
            raise FieldError("membership.issuer", self._issuer_needed())
        settings = self._issuers.get(issuer)
        if settings is None:
            raise FieldError(
                "membership.issuer",
                f"{issuer!r} is not a configured issuer; configured: {sorted(self._issuers)}: a membership "
                "of another issuer would grant roles to nobody, or to whoever it names later",
            )
        if not settings.binds(organization_id):
            raise FieldError(
                "membership.organization_id",
                f"issuer {issuer!r} is not bound to this organization (its `organizations` setting, S7)",
            )
        return issuer

    def _issuer_needed(self) -> str:
        if not self._issuers:
            return "no [[issuers]] is configured: stored memberships are roles of an issuer's users (C1)"
        return f"is required: several issuers are configured ({sorted(self._issuers)}); name the user's"

    # ---- credentials ----

    async def CreateCredential(
        self, request: admin_pb2.CreateCredentialRequest, context: Context
    ) -> admin_pb2.CreateCredentialResponse:
        row, secret = new_credential.build(request, self._catalogue, self._master_key)
        stored = await _found(context, self._add_credential(row))
        return admin_pb2.CreateCredentialResponse(
            credential=convert.credential_to_proto(stored), secret=secret
        )

    async def _add_credential(self, row: models.Credential) -> models.Credential:
        """C10: one credential per service identity (the unique index settles a race)."""
        taken = "is registered already: deactivate or delete that credential first"
        if row.service_identity and await self._store.credential_id_for_identity(row.service_identity):
            raise FieldError("service_identity", taken)
        try:
            return await self._store.add_credential(row)
        except IntegrityError:
            if row.service_identity:
                raise FieldError("service_identity", taken) from None
            raise

    async def _credential(self, context: Context, credential_id: str) -> models.Credential:
        lookup = self._store.get_credential(_id(credential_id))
        return await _found(context, lookup, "credential")

    async def GetCredential(
        self, request: admin_pb2.GetCredentialRequest, context: Context
    ) -> admin_pb2.Credential:
        since = credential_usage.window_start(datetime.now(UTC))
        lookup = self._store.credential_with_daily_usage(_id(request.id), since)
        credential, days = await _found(context, lookup, "credential")
        return credential_usage.with_daily_usage(credential, days)

    async def ListCredentials(
        self, request: admin_pb2.ListCredentialsRequest, context: Context
    ) -> admin_pb2.ListCredentialsResponse:
        if request.kind == common_pb2.CREDENTIAL_KIND_ADMIN_TOKEN:
            organization_id = None
        else:
            organization_id = _id(request.organization_id, "organization_id")
        listing = self._store.list_credentials_with_usage(
            organization_id,
            credential_usage.window_start(datetime.now(UTC)),
            request.kind,
            convert.identifier(request.application_id, "application_id"),
            request.page_size,
            request.page_token,
            credential_usage.unused_since(request.unused_for_days),
        )
        page = await _listing(_found(context, listing))
        return admin_pb2.ListCredentialsResponse(
            credentials=[credential_usage.with_usage(row, uses) for row, uses in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeactivateCredential(
        self, request: admin_pb2.DeactivateCredentialRequest, context: Context
    ) -> admin_pb2.Credential:
        credential_id = _id(request.id)
        deactivated = await _found(context, self._store.deactivate_credential(credential_id))
        return convert.credential_to_proto(deactivated)

    async def DeleteCredential(
        self, request: admin_pb2.DeleteCredentialRequest, context: Context
    ) -> admin_pb2.DeleteCredentialResponse:
        await _found(context, self._store.delete_credential(_id(request.id)))
        return admin_pb2.DeleteCredentialResponse()

    async def RotateCredential(
        self, request: admin_pb2.RotateCredentialRequest, context: Context
    ) -> admin_pb2.CreateCredentialResponse:
        row = await self._credential(context, request.id)
        limit = minting.MAX_OVERLAP.total_seconds()
        if request.overlap_seconds < 0 or request.overlap_seconds > limit:
            raise FieldError("overlap_seconds", f"must be between 0 and {int(limit)}")
        if row.deactivated_at is not None:
            raise FieldError("id", "a deactivated credential cannot be rotated")
        now = datetime.now(UTC)
        previous_valid_until = (
            now + timedelta(seconds=request.overlap_seconds) if request.overlap_seconds else None
        )
        secret = minting.rotated_secret(row, self._master_key)
        rotation = self._store.rotate_credential(
            row.id, secret.hash, secret.sealed, previous_valid_until, now
        )
        rotated = await _found(context, rotation)
        return admin_pb2.CreateCredentialResponse(
            credential=convert.credential_to_proto(rotated), secret=secret.value
        )

    # ---- outbound credentials, signing keys, revocation: later issues ----

    async def CreateOutboundCredential(
        self, request: admin_pb2.CreateOutboundCredentialRequest, context: Context
    ) -> admin_pb2.CreateOutboundCredentialResponse:
        row, generated = outbound_admin.build(request, self._master_key)
        stored = await _found(context, self._store.add_outbound_credential(row))
        return admin_pb2.CreateOutboundCredentialResponse(
            credential=outbound_admin.to_proto(stored), payload_signing_secret=generated
        )

    async def _outbound_credential(self, context: Context, credential_id: str) -> models.OutboundCredential:
        lookup = self._store.get_outbound_credential(_id(credential_id))
        return await _found(context, lookup, "outbound credential")

    async def GetOutboundCredential(
        self, request: admin_pb2.GetOutboundCredentialRequest, context: Context
    ) -> admin_pb2.OutboundCredential:
        return outbound_admin.to_proto(await self._outbound_credential(context, request.id))

    async def ListOutboundCredentials(
        self, request: admin_pb2.ListOutboundCredentialsRequest, context: Context
    ) -> admin_pb2.ListOutboundCredentialsResponse:
        organization_id = _id(request.organization_id, "organization_id")
        listing = self._store.list_outbound_credentials(
            organization_id, request.page_size, request.page_token
        )
        page = await _listing(_found(context, listing))
        return admin_pb2.ListOutboundCredentialsResponse(
            credentials=[outbound_admin.to_proto(row) for row in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeactivateOutboundCredential(
        self, request: admin_pb2.DeactivateOutboundCredentialRequest, context: Context
    ) -> admin_pb2.OutboundCredential:
        credential_id = _id(request.id)
        row = await _found(context, self._store.deactivate_outbound_credential(credential_id))
        return outbound_admin.to_proto(row)

    async def DeleteOutboundCredential(
        self, request: admin_pb2.DeleteOutboundCredentialRequest, context: Context
    ) -> admin_pb2.DeleteOutboundCredentialResponse:
        credential_id = _id(request.id)
        await _found(context, self._store.delete_outbound_credential(credential_id))
        return admin_pb2.DeleteOutboundCredentialResponse()

    async def RotateOutboundCredential(
        self, request: admin_pb2.RotateOutboundCredentialRequest, context: Context
    ) -> admin_pb2.CreateOutboundCredentialResponse:
        row = await self._outbound_credential(context, request.id)
        sealed, until, generated = outbound_admin.rotated(row, request, self._master_key)
        updated = await _found(context, self._store.rotate_outbound_credential(row.id, sealed, until))
        return admin_pb2.CreateOutboundCredentialResponse(
            credential=outbound_admin.to_proto(updated), payload_signing_secret=generated
        )

    # ---- signing keys (I5) ----

    async def ListSigningKeys(
        self, request: admin_pb2.ListSigningKeysRequest, context: Context
    ) -> admin_pb2.ListSigningKeysResponse:
        # As the contract says: the keys that still verify (retired ones are of no use to anyone).
        keys = await self._store.signing_keys_for_jwks(datetime.now(UTC))
        return admin_pb2.ListSigningKeysResponse(keys=[convert.signing_key_to_proto(key) for key in keys])

    async def RotateSigningKey(
        self, request: admin_pb2.RotateSigningKeyRequest, context: Context
    ) -> admin_pb2.SigningKey:
        if self._keyring is None:
            await errors.abort(
                context,
                grpc.StatusCode.UNIMPLEMENTED,
                errors.NOT_IMPLEMENTED,
                "RotateSigningKey is not served by this version",
            )
        if request.algorithm and request.algorithm not in signing_keys.ALGORITHMS:
            raise FieldError("algorithm", f"must be empty or one of {', '.join(signing_keys.ALGORITHMS)}")
        row = await self._keyring.rotate(request.algorithm or None)
        return convert.signing_key_to_proto(row)

    # ---- revocation (I6) ----

    async def RevokeToken(
        self, request: admin_pb2.RevokeTokenRequest, context: Context
    ) -> admin_pb2.RevokeTokenResponse:
        token_id = convert.required(request.token_id, "token_id", convert.MAX_ID)
        if request.HasField("expires_at"):
            expires_at = convert.from_timestamp(request.expires_at, "expires_at")
        else:
            # Unknown expiry: keep the entry as long as any token Watchword issues can live.
            expires_at = datetime.now(UTC) + timedelta(seconds=self._revocation_lifetime)
        await self._store.revoke_token(token_id, expires_at)
        return admin_pb2.RevokeTokenResponse()


def _id(value: str, field: str = "id") -> str:
    """A required id field of a request."""
    return convert.required(value, field, convert.MAX_ID)


async def _found(context: Context, call: Awaitable[T | None], what: str = "") -> T:
    """Await a store call, answering NOT_FOUND when a record it names does not exist: the store raised
    NotFoundError, or a lookup of `what` found nothing."""
    try:
        result = await call
    except NotFoundError as exc:
        await errors.not_found(context, f"{exc.what} not found")
    if result is None and what:
        await errors.not_found(context, f"{what} not found")
    return result  # type: ignore[return-value]  # None only from calls that answer nothing (deletes)


async def _listing(call: Awaitable[Page[T]]) -> Page[T]:
    try:
        return await call
    except InvalidPageTokenError as exc:
        raise FieldError("page_token", str(exc)) from None
    except ValueError as exc:
        raise FieldError("page_size", str(exc)) from None
