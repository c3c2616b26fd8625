"""The flow every question takes: extract -> identify -> (resolve the resource) -> decide.

No gRPC here: the servicers in `api/` translate protos to these calls and back.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from watchword import challenge, extract, reasons
from watchword.caches import CacheRegistry
from watchword.crypto.master_key import MasterKey
from watchword.decide.catalogue import APPLICATION_LEVELS, Catalogue
from watchword.decide.rules import decide
from watchword.domain import (
    CredentialKind,
    Decision,
    HttpParts,
    PresentedCredential,
    Principal,
    Refusal,
    Resource,
    Transport,
)
from watchword.hygiene.usage import UsageCounter
from watchword.identify import cache, client_certificate, opaque_secret, verifiers, watchword_token
from watchword.identify.client_certificate import CertificateSettings
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.identify.oauth_client import ClientAuthenticator
from watchword.identify.sealed_keys import SealedKeys
from watchword.identify.verified_tokens import VerifiedTokens
from watchword.identify.verifier import JwtSettings
from watchword.observe import spans, tracing
from watchword.store.change_feed import ChangeKind
from watchword.store.database import is_store_outage
from watchword.store.models import Application, Credential, Membership
from watchword.store.repository import Store

log = logging.getLogger("watchword.pipeline")


@dataclass(frozen=True, slots=True)
class BareInput:
    token: str
    client_id: str = ""


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """C10: the caller's own TLS client certificate (PEM; empty: its connection has none)."""

    pem: str = ""


CredentialInput = BareInput | HttpParts | PeerCertificate
# Authentication results by credential, shared by the entries of one batch.
Memo = dict[PresentedCredential, Principal | Refusal]


@dataclass(frozen=True, slots=True)
class AuthorizeOutcome:
    decision: Decision
    principal: Principal | None = None
    refusal: Refusal | None = None


def entry_fault(what: str) -> tuple[str, str]:
    """Log the exception being handled once, with its traceback and an incident id (never a credential:
    tracebacks carry no local values), and return the reason and message that name the incident (T7)."""
    incident = uuid.uuid4().hex[:16]
    log.exception("internal error %s (incident %s)", what, incident)
    return reasons.INTERNAL_ERROR, f"internal error (incident {incident})"


def _challenge(refusal: Refusal, source: CredentialInput) -> str:
    # No HTTP around a bare token (T6) or a TLS connection: no response header to challenge with.
    if not isinstance(source, HttpParts):
        return ""
    return challenge.for_refusal(refusal.reason, source.headers)


def _peer_certificate(source: PeerCertificate) -> PresentedCredential | Refusal:
    return client_certificate.presented(source.pem) if source.pem else client_certificate.missing()


# C10's transport, read once: checked on every identification.
_CERTIFICATE = Transport.CLIENT_CERTIFICATE


class Pipeline:
    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        transports: extract.TransportSettings,
        master_key: MasterKey,
        jwt: JwtSettings | None = None,
        external: ExternalJwtVerifier | None = None,
        cache_ttl: float = cache.DEFAULT_TTL_SECONDS,
        cache_max_entries: int = cache.DEFAULT_MAX_ENTRIES,
        certificates: CertificateSettings | None = None,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.transports = transports
        self.jwt = jwt or JwtSettings()
        self.external = external
        bound = cache_max_entries  # each cache's entries, so a replica's memory is bounded (README)
        self.credentials: cache.TtlCache[Credential] = cache.TtlCache(store.get_credential, cache_ttl, bound)
        self.applications: cache.TtlCache[Application] = cache.TtlCache(
            store.get_application, cache_ttl, bound
        )
        # Keyed by subject (what the change feed names), valued by issuer: a user is (issuer, subject).
        self.memberships: cache.TtlCache[dict[str, list[Membership]]] = cache.TtlCache(
            store.user_memberships, cache_ttl, bound
        )
        self.revocations: cache.TtlCache[bool] = cache.TtlCache(store.is_revoked, cache_ttl, bound)
        self.sealed_keys = SealedKeys(master_key)
        self.verified_tokens = VerifiedTokens(self.credentials.get, max_entries=bound)
        self.verified_secrets = opaque_secret.VerifiedSecrets(bound)  # speed: see its docstring
        self.signing_keys = watchword_token.SigningKeyRing(store.list_signing_keys)
        # C9: used by IssueToken's client credentials grant.
        self.clients = ClientAuthenticator(
            self.credentials.get,
            self.sealed_keys,
            store.use_client_assertion,
            # RFC 7523 names the token endpoint; draft-ietf-oauth-rfc7523bis the issuer identifier.
            (self.jwt.token_endpoint, self.jwt.token_issuer),
            self.jwt.leeway_seconds,
            transports.max_token_bytes,
        )
        self._application_actions = catalogue.actions_at(APPLICATION_LEVELS)
        # Opaque secrets (C2, C3, C5, C6, C9) to one verifier; JWTs (C1, C4, C7, C8) through the registry.
        lookup = self.credentials.get
        self.secrets = opaque_secret.OpaqueSecretVerifier(
            lookup, self._application_actions, self.verified_secrets
        )
        deps = verifiers.Dependencies(lookup, self.sealed_keys, self.signing_keys, self.jwt, external)
        self.jwts = verifiers.JwtRouter(verifiers.jwt_verifiers(deps), transports.max_token_bytes)
        self._build_certificates(certificates, cache_ttl, bound)
        self.identifications = 0  # credentials verified (cache hits included): for tests and metrics
        self.usage: UsageCounter | None = None  # key hygiene: set by compose when usage is tracked
        self.caches = self._registered_caches()
        if tracing.enabled:
            self._trace_phases()

    def _trace_phases(self) -> None:
        """Each phase in a span of its own (docs/operations/tracing.md; the answer goes on the request's span
        with its audit record, `observe.decisions`). Only while tracing is on: off, nothing is wrapped and
        the phases cost what they always did."""
        self._extract = tracing.phase("extract", self._extract, spans.extracted)
        self._identify = tracing.async_phase("identify", self._identify, spans.identified)
        self._decide = tracing.phase("decide", self._decide, spans.decided)
        for verified in (self.verified_tokens, self.verified_secrets):
            verified.get = tracing.annotated(verified.get, spans.cache_lookup)

    def _build_certificates(self, settings: CertificateSettings | None, ttl: float, bound: int) -> None:
        """C10, when a client CA bundle is configured: service identity -> credential id, cached."""
        self.certificates: client_certificate.ClientCertificateVerifier | None = None
        if settings is None:
            return
        self.service_identities: cache.TtlCache[str] = cache.TtlCache(
            self.store.credential_id_for_identity, ttl, bound
        )
        checker = client_certificate.CertificateChecker(settings, bound)
        self.certificates = client_certificate.ClientCertificateVerifier(
            checker, self.service_identities.get, self.credentials.get, bound
        )
        self.clients.certificates = self.certificates  # RFC 8705 §2.1 at the OAuth HTTP endpoints

    def _register_certificates(self, caches: CacheRegistry) -> None:
        # Keyed by credential ids and, for a new C10 credential, by its identity (`store.credentials`).
        if self.certificates is not None:
            stored = {"counted": True, "serves_stale": True}
            caches.add("service_identities", self.service_identities, {ChangeKind.CREDENTIAL}, **stored)
            caches.add("certificate_principals", self.certificates, {ChangeKind.CREDENTIAL})
            caches.add("verified_certificates", self.certificates.checker, ())

    def _registered_caches(self) -> CacheRegistry:
        """Every cache this pipeline keeps, with the changes whose ids are its keys (`watchword.caches`):
        invalidation, outage answers and metrics reach exactly these."""
        caches = CacheRegistry()
        stored = {"counted": True, "serves_stale": True}  # store lookups: values safe to serve stale
        caches.add("credentials", self.credentials, {ChangeKind.CREDENTIAL}, **stored)
        caches.add("applications", self.applications, {ChangeKind.APPLICATION_CREATED}, **stored)
        caches.add("memberships", self.memberships, {ChangeKind.MEMBERSHIP}, **stored)
        caches.add("revocations", self.revocations, {ChangeKind.TOKEN_REVOKED}, **stored)
        caches.add("verified_tokens", self.verified_tokens, {ChangeKind.CREDENTIAL}, counted=True)
        caches.add("verified_secrets", self.verified_secrets, {ChangeKind.CREDENTIAL})
        caches.add("sealed_keys", self.sealed_keys, {ChangeKind.CREDENTIAL})
        caches.add("client_public_keys", self.clients.public_keys, {ChangeKind.CREDENTIAL})
        caches.add_key_ring("signing_keys", self.signing_keys.reload)
        self._register_certificates(caches)
        return caches

    async def authenticate(
        self, source: CredentialInput, now: datetime | None = None, memo: Memo | None = None
    ) -> Principal | Refusal:
        """`memo`, shared by the entries of one batch (T7), verifies each distinct credential once."""
        now = now or datetime.now(UTC)
        presented = self._extract(source)
        if isinstance(presented, Refusal):
            result: Principal | Refusal = presented
        elif memo is not None:
            result = memo[presented] if presented in memo else await self._identify_isolated(presented, now)
            memo[presented] = result
        else:
            result = await self._identify(presented, now)
        if isinstance(result, Refusal):
            result = replace(result, www_authenticate=_challenge(result, source))
        elif self.usage is not None:
            self.usage.record(result, now)  # in memory only: flushed in batches (`hygiene.usage`)
        return result

    def _extract(self, source: CredentialInput) -> PresentedCredential | Refusal:
        if isinstance(source, BareInput):
            return extract.from_bare(source.token, source.client_id, self.transports.max_token_bytes)
        if isinstance(source, HttpParts):
            return extract.from_http(source, self.transports)
        return _peer_certificate(source)

    def note_use(self, principal: Principal, now: datetime) -> None:
        """A use of `principal`'s credential verified outside `authenticate` (C9 at the token endpoint)."""
        if self.usage is not None:
            self.usage.record(principal, now)

    async def _identify_isolated(self, presented: PresentedCredential, now: datetime) -> Principal | Refusal:
        """In a batch (T7), an unexpected fault verifying one credential is that credential's refusal,
        remembered in the memo so it is logged once; a store outage still fails the call (retryable)."""
        try:
            return await self._identify(presented, now)
        except Exception as exc:
            if is_store_outage(exc):
                raise
            reason, message = entry_fault("verifying a batch entry's credential")
            return Refusal(reason=reason, message=message)

    async def _identify(self, presented: PresentedCredential, now: datetime) -> Principal | Refusal:
        """Route by shape: a compact JWS to the JWT verifier that fits it, anything else to the secrets."""
        self.identifications += 1
        if presented.transport is _CERTIFICATE:
            return await self._certificate(presented, now)
        if presented.token.count(".") != 2:
            return await self.secrets.verify(presented, now)
        result = await self.verified_tokens.get(presented, now)
        if result is None:
            result = await self.jwts.verify(presented, now)
            if isinstance(result, Principal):
                await self.verified_tokens.remember(presented, result)
        if isinstance(result, Principal) and result.token_id and await self.revocations.get(result.token_id):
            return Refusal(reason=reasons.TOKEN_REVOKED, message="the token has been revoked")
        if isinstance(result, Principal) and result.kind is CredentialKind.EXTERNAL_JWT:
            # Stored roles change independently of the token: merged on every call, from their own cache.
            result = await self._with_stored_roles(result)
        return result

    async def _certificate(self, presented: PresentedCredential, now: datetime) -> Principal | Refusal:
        if self.certificates is None:
            message = "client certificates are not accepted here: no tls_client_ca_file is configured"
            return Refusal(reason=reasons.CREDENTIAL_KIND_UNSUPPORTED, message=message)
        return await self.certificates.verify(presented, now)

    async def _with_stored_roles(self, user: Principal) -> Principal:
        """S1: merge the memberships stored through the admin API, where the user's issuer says so. Only
        the rows stored for this issuer and subject, in organizations the issuer is bound to (S7)."""
        assert self.external is not None
        settings = self.external.settings(user.issuer)
        if settings is None or settings.roles_source == "claims":
            return user
        rows = (await self.memberships.get(user.id) or {}).get(user.issuer, [])
        stored = {row.organization_id: set(row.roles) for row in rows if settings.binds(row.organization_id)}
        if settings.roles_source == "both":
            for organization, roles in user.memberships:
                stored.setdefault(organization, set()).update(roles)
        merged = tuple((org, tuple(sorted(roles))) for org, roles in sorted(stored.items()) if roles)
        if settings.roles_source == "memberships":  # the token's claims count for nothing, bound or not
            return replace(user, memberships=merged, unbound_organizations=())
        return replace(user, memberships=merged)

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
        if resource.organization_id:
            return resource  # already names the application's organization
        # Built directly: dataclasses.replace costs several times more, on every Authorize.
        return Resource(
            application.organization_id,
            resource.application_id,
            resource.event_type,
            resource.object_id,
            resource.subject,
        )

    async def authorize(
        self,
        source: CredentialInput,
        action: str,
        resource: Resource,
        now: datetime | None = None,
        memo: Memo | None = None,
    ) -> AuthorizeOutcome:
        authenticated = await self.authenticate(source, now, memo)
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
        decision = self._decide(authenticated, action, resolved)
        return AuthorizeOutcome(decision=decision, principal=authenticated)

    def _decide(self, principal: Principal, action: str, resource: Resource) -> Decision:
        return decide(self.catalogue, principal, action, resource)

    def batch_credentials(self, sources: list[CredentialInput]) -> set[PresentedCredential]:
        """The distinct credentials a batch presents (T7): what it can make this replica verify."""
        found: set[PresentedCredential] = set()
        for source in sources:
            presented = self._extract(source)
            if not isinstance(presented, Refusal):
                found.add(presented)
        return found

    async def preload(self, credentials: set[PresentedCredential]) -> None:
        """Look up the stored credentials that a batch's opaque secrets name together, in one query: a
        batch of unknown keys once cost one query per entry."""
        named = (
            opaque_secret.credential_id_of(p)
            for p in credentials
            if p.token.count(".") != 2 and p.transport is not Transport.CLIENT_CERTIFICATE
        )
        try:
            await self.credentials.load_many([i for i in named if i], self.store.get_credentials)
        except Exception:
            # Only a shortcut: each entry's own lookup meets the same fault and answers it as it always
            # does (a stale entry during an outage, UNAVAILABLE, the entry's own refusal).
            return
