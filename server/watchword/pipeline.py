"""The flow every question takes: extract -> identify -> (resolve the resource) -> decide.

No gRPC here: the servicers in `api/` translate protos to these calls and back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from watchword import extract, reasons
from watchword.decide.catalogue import APPLICATION_LEVELS, Catalogue
from watchword.decide.rules import decide
from watchword.domain import Decision, HttpParts, Principal, Refusal, Resource
from watchword.identify import cache, opaque_secret
from watchword.store.models import Application, Credential
from watchword.store.repository import Store


@dataclass(frozen=True, slots=True)
class BareInput:
    token: str
    client_id: str = ""


CredentialInput = BareInput | HttpParts


@dataclass(frozen=True, slots=True)
class AuthorizeOutcome:
    decision: Decision
    principal: Principal | None = None
    refusal: Refusal | None = None


class Pipeline:
    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        transports: extract.TransportSettings,
        cache_ttl: float = cache.DEFAULT_TTL_SECONDS,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.transports = transports
        self.credentials: cache.TtlCache[Credential] = cache.TtlCache(store.get_credential, cache_ttl)
        self.applications: cache.TtlCache[Application] = cache.TtlCache(store.get_application, cache_ttl)
        self._application_actions = catalogue.actions_at(APPLICATION_LEVELS)

    async def authenticate(self, source: CredentialInput, now: datetime | None = None) -> Principal | Refusal:
        now = now or datetime.now(UTC)
        if isinstance(source, BareInput):
            presented = extract.from_bare(source.token, source.client_id, self.transports.max_token_bytes)
        else:
            presented = extract.from_http(source, self.transports)
        if isinstance(presented, Refusal):
            return presented
        return await opaque_secret.verify(presented, self.credentials.get, now, self._application_actions)

    async def resolve(self, resource: Resource) -> Resource | None:
        """Fill in the organization of the resource's application; None when the application does not
        exist or belongs to another organization than the one named."""
        if not resource.application_id:
            return resource
        application = await self.applications.get(resource.application_id)
        if application is None:
            return None
        if resource.organization_id and resource.organization_id != application.organization_id:
            return None
        return replace(resource, organization_id=application.organization_id)

    async def authorize(
        self, source: CredentialInput, action: str, resource: Resource, now: datetime | None = None
    ) -> AuthorizeOutcome:
        authenticated = await self.authenticate(source, now)
        if isinstance(authenticated, Refusal):
            denial = Decision(False, reasons.NOT_AUTHENTICATED, "S8", authenticated.message)
            return AuthorizeOutcome(decision=denial, refusal=authenticated)
        resolved = await self.resolve(resource)
        if resolved is None:
            denial = Decision(
                False,
                reasons.RESOURCE_NOT_IN_SCOPE,
                "S7",
                "the resource is outside the principal's organization",
            )
            return AuthorizeOutcome(decision=denial, principal=authenticated)
        return AuthorizeOutcome(
            decision=decide(self.catalogue, authenticated, action, resolved), principal=authenticated
        )
