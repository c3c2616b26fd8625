"""C10 workload identity: an X.509 client certificate, mapped to a registered service identity.

A certificate reaches here as PEM (the leaf first, then any intermediates) from Watchword's own mutual
TLS, from Envoy's ext_authz source attributes (`source.certificate`) or from a trusted proxy's XFCC
header (`Cert=`/`Chain=`). Whoever delivered it, Watchword verifies it itself against the configured CA
bundle (`tls_client_ca_file`): within its validity period, the clientAuth EKU when it has an EKU, and a
chain to one of the CAs (cryptography's `x509.verification` client verifier, RFC 5280 path validation).

Its identity is its SPIFFE id (the one URI SAN of an X509-SVID, checked against the SPIFFE-ID spec and,
when configured, the accepted trust domains) or, where enabled and it has no SPIFFE id, its subject name
(RFC 4514). The identity names exactly one stored credential of kind C10 (`Credential.service_identity`,
an exact match), whose organization, permissions, event patterns, expiry and deactivation apply as for
any credential (S3, S6).

A proxy may name the client without its certificate (Envoy's `source.principal`, an XFCC element with a
URI but no Cert): that bare identity is trusted only under `client_certificate_trust_bare_identity`,
because then nothing but the proxy's word proves it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from watchword import reasons
from watchword.domain import CredentialKind, PresentedCredential, Principal, Refusal, Transport
from watchword.identify import xfcc
from watchword.identify.cache import trim_oldest
from watchword.identify.credential_state import state_refusal
from watchword.identify.verifier import CredentialLookup, refuse
from watchword.store.models import Credential

SPIFFE_PREFIX = "spiffe://"
# One identity is one change-feed id (`store.change_feed.MAX_ID_CHARS`): SPIFFE allows 2048, services
# use far fewer.
MAX_IDENTITY_CHARS = 255
MAX_PEM_CHARS = 65536
MAX_CHAIN_DEPTH = 8
DEFAULT_MAX_ENTRIES = 10_000
_PEM_BEGIN = "-----BEGIN"
# SPIFFE-ID spec §2.1-2.2: a lowercase trust domain; path segments of letters, digits, `.`, `-`, `_`.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")

IdentityLookup = Callable[[str], Awaitable[str | None]]


class IdentityError(ValueError):
    """A SPIFFE id or subject name that cannot be a service identity."""


def spiffe_id_problem(value: str) -> str | None:
    """Why `value` is not a SPIFFE id as the spec defines it (None: it is one). No query, fragment,
    port or userinfo: none of their characters is allowed anywhere."""
    if not value.startswith(SPIFFE_PREFIX):
        return "a SPIFFE id starts with spiffe:// (lowercase)"
    if len(value) > MAX_IDENTITY_CHARS:
        return f"longer than {MAX_IDENTITY_CHARS} characters"
    trust_domain, slash, path = value[len(SPIFFE_PREFIX) :].partition("/")
    if _TRUST_DOMAIN.fullmatch(trust_domain) is None:
        return "the trust domain must be lowercase letters, digits, '.', '-' or '_' (no port, no userinfo)"
    if not slash:
        return None
    for segment in path.split("/"):
        if _SEGMENT.fullmatch(segment) is None or segment in (".", ".."):
            return "each path segment must be non-empty letters, digits, '.', '-' or '_', and not . or .."
    return None


def trust_domain_of(spiffe_id: str) -> str:
    return spiffe_id[len(SPIFFE_PREFIX) :].partition("/")[0]


def canonical_subject(text: str) -> str:
    """A subject name in the one form certificates are compared in (RFC 4514, as cryptography writes it)."""
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise IdentityError(f"not an RFC 4514 subject name: {exc}") from None
    canonical = name.rfc4514_string()
    if not canonical:
        raise IdentityError("the subject name is empty")
    return canonical


def service_identity(value: str) -> str:
    """What the admin API stores for a C10 credential: a valid SPIFFE id as given, or a subject name in
    its canonical form. IdentityError says why not."""
    if value.lower().startswith("spiffe:"):
        problem = spiffe_id_problem(value)
        if problem:
            raise IdentityError(problem)
        return value
    canonical = canonical_subject(value)
    if len(canonical) > MAX_IDENTITY_CHARS:
        raise IdentityError(f"longer than {MAX_IDENTITY_CHARS} characters")
    return canonical


@dataclass(frozen=True, slots=True)
class CertificateSettings:
    """How client certificates are trusted and read (the `tls_client_*`/`client_certificate_*` settings)."""

    authorities: tuple[x509.Certificate, ...]
    trust_domains: frozenset[str] = frozenset()  # empty: any the CAs vouch for
    subject_names: bool = False  # a certificate without a SPIFFE id is known by its subject name
    trust_bare_identity: bool = False  # a proxy's word without the certificate


def load_authorities(path: Path) -> tuple[x509.Certificate, ...]:
    """The CA certificates of a PEM bundle; ValueError when there is none or it does not parse."""
    try:
        authorities = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable PEM bundle of CA certificates ({exc})") from None
    return tuple(authorities)


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    """A certificate that verified: its identity, and when its chain is valid (checked on every use)."""

    identity: str
    not_before: datetime
    not_after: datetime


def _end_entity_policy() -> ExtensionPolicy:
    # The web PKI's profile, except that a certificate known by its subject name may lack SANs.
    return ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )


class CertificateChecker:
    """PEM -> VerifiedCertificate or a Refusal. Pure (no store); successes are kept, bounded, so a
    client's certificate is verified once and only its validity window is checked afterwards."""

    def __init__(self, settings: CertificateSettings, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.settings = settings
        self._store = Store(list(settings.authorities))
        self._ee_policy = _end_entity_policy()
        self._ca_policy = ExtensionPolicy.webpki_defaults_ca()
        self._max_entries = max_entries
        self._verified: dict[str, VerifiedCertificate] = {}

    def check(self, pem: str, now: datetime) -> VerifiedCertificate | Refusal:
        known = self._verified.get(pem)
        if known is not None and known.not_before <= now < known.not_after:
            return known
        result = self._verify(pem, now)
        if isinstance(result, VerifiedCertificate):
            self._verified[pem] = result
            trim_oldest(self._verified, self._max_entries)
        return result

    # Registered with the replica's caches (`watchword.caches`): it holds no store state, so no change
    # drops an entry; a full flush empties it.
    def invalidate(self, key: str) -> None:
        return None

    def clear(self) -> None:
        self._verified.clear()

    def __len__(self) -> int:
        return len(self._verified)

    def bare_identity(self, text: str) -> str | Refusal:
        """A proxy's word for the client's identity, without its certificate (under the setting only)."""
        if not self.settings.trust_bare_identity:
            return refuse(
                reasons.CLIENT_CERTIFICATE_MISSING,
                "the proxy named the client without its certificate, and bare identities are not trusted",
            )
        if text.lower().startswith("spiffe:"):
            return self._spiffe_identity(text)
        if not self.settings.subject_names:
            return refuse(reasons.CLIENT_CERTIFICATE_SAN_MISSING, "the client has no SPIFFE id")
        try:
            return canonical_subject(text)
        except IdentityError as exc:
            return refuse(reasons.CLIENT_CERTIFICATE_SAN_INVALID, str(exc))

    def _verify(self, pem: str, now: datetime) -> VerifiedCertificate | Refusal:
        certificates = _certificates(pem)
        if isinstance(certificates, Refusal):
            return certificates
        leaf, intermediates = certificates[0], [c for c in certificates[1:] if c != certificates[0]]
        refusal = _validity_refusal(leaf, now) or _usage_refusal(leaf)
        if refusal is not None:
            return refusal
        try:
            verified = self._verifier(now).verify(leaf, intermediates)
        except VerificationError as exc:
            message = "the client certificate does not chain to a trusted CA"
            return refuse(reasons.CLIENT_CERTIFICATE_UNTRUSTED, message, detail=str(exc)[:500])
        identity = self._identity(leaf)
        if isinstance(identity, Refusal):
            return identity
        chain = verified.chain
        return VerifiedCertificate(
            identity,
            max(c.not_valid_before_utc for c in chain),
            min(c.not_valid_after_utc for c in chain),
        )

    def _verifier(self, now: datetime) -> x509.verification.ClientVerifier:
        return (
            PolicyBuilder()
            .store(self._store)
            .time(now)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )

    def _identity(self, leaf: x509.Certificate) -> str | Refusal:
        uris = _uri_sans(leaf)
        if any(uri.lower().startswith("spiffe:") for uri in uris):
            if len(uris) != 1:
                message = "an X509-SVID carries exactly one URI SAN, its SPIFFE id"
                return refuse(reasons.CLIENT_CERTIFICATE_SAN_INVALID, message)
            return self._spiffe_identity(uris[0])
        if not self.settings.subject_names:
            message = "the client certificate has no SPIFFE id (URI SAN)"
            return refuse(reasons.CLIENT_CERTIFICATE_SAN_MISSING, message)
        subject = leaf.subject.rfc4514_string()
        if not subject or len(subject) > MAX_IDENTITY_CHARS:
            message = "the client certificate has neither a SPIFFE id nor a usable subject name"
            return refuse(reasons.CLIENT_CERTIFICATE_SAN_MISSING, message)
        return subject

    def _spiffe_identity(self, uri: str) -> str | Refusal:
        problem = spiffe_id_problem(uri)
        if problem:
            return refuse(reasons.CLIENT_CERTIFICATE_SAN_INVALID, f"not a valid SPIFFE id: {problem}")
        domains = self.settings.trust_domains
        if domains and trust_domain_of(uri) not in domains:
            message = "the SPIFFE id's trust domain is not one this deployment accepts"
            return refuse(reasons.CLIENT_CERTIFICATE_SAN_INVALID, message)
        return uri


def _certificates(pem: str) -> list[x509.Certificate] | Refusal:
    if len(pem) > MAX_PEM_CHARS:
        return refuse(reasons.CREDENTIAL_MALFORMED, "the client certificate chain is too long")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return refuse(reasons.CREDENTIAL_MALFORMED, "the client certificate is not PEM")
    if len(certificates) > MAX_CHAIN_DEPTH:
        return refuse(reasons.CREDENTIAL_MALFORMED, "the client certificate chain is too long")
    return certificates


def _validity_refusal(leaf: x509.Certificate, now: datetime) -> Refusal | None:
    if now < leaf.not_valid_before_utc:
        return refuse(reasons.CLIENT_CERTIFICATE_NOT_YET_VALID, "the client certificate is not valid yet")
    if now >= leaf.not_valid_after_utc:
        return refuse(reasons.CLIENT_CERTIFICATE_EXPIRED, "the client certificate has expired")
    return None


def _usage_refusal(leaf: x509.Certificate) -> Refusal | None:
    """RFC 5280 §4.2.1.12: with an EKU, the certificate is for the purposes it lists only."""
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ExtendedKeyUsageOID.CLIENT_AUTH in usages:
        return None
    return refuse(reasons.CLIENT_CERTIFICATE_USAGE_INVALID, "the certificate is not for TLS clients (EKU)")


def _uri_sans(leaf: x509.Certificate) -> list[str]:
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return names.get_values_for_type(x509.UniformResourceIdentifier)


# ---- where a certificate comes from ----


def presented(text: str) -> PresentedCredential:
    """A certificate (PEM) or a proxy's bare identity, as the C10 credential of a request."""
    return PresentedCredential(token=text, transport=Transport.CLIENT_CERTIFICATE)


def missing() -> Refusal:
    return refuse(reasons.CLIENT_CERTIFICATE_MISSING, "no client certificate was presented")


def from_xfcc(values: list[str], trusted_by: tuple[str, ...]) -> PresentedCredential | Refusal:
    """The credential of a trusted proxy's XFCC header: the element it added (the last one), which must
    name the proxy (`By=`) when `trusted_by` is configured."""
    try:
        element = xfcc.nearest(values)
    except xfcc.XfccError as exc:
        return refuse(reasons.XFCC_MALFORMED, f"the x-forwarded-client-cert header is malformed: {exc}")
    if trusted_by and not set(element.by) & set(trusted_by):
        message = "the x-forwarded-client-cert element was not added by a trusted proxy"
        return refuse(reasons.XFCC_UNTRUSTED, message)
    if element.cert or element.chain:
        return presented("\n".join(pem for pem in (element.cert, element.chain) if pem))
    if len(element.uri) > 1:
        message = "the proxy named several URIs for the client; an X509-SVID has one"
        return refuse(reasons.CLIENT_CERTIFICATE_SAN_INVALID, message)
    bare = element.uri[0] if element.uri else element.subject
    return presented(bare) if bare else missing()


# ---- the verifier ----

# A principal kept per presented certificate: the record it was built from, and the principal.
_Entry = tuple[Credential, Principal]


class ClientCertificateVerifier:
    """C10: a presented certificate (or a trusted bare identity) -> the principal of its service identity."""

    kind = CredentialKind.CLIENT_CERTIFICATE

    def __init__(
        self,
        checker: CertificateChecker,
        identities: IdentityLookup,
        lookup: CredentialLookup,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.checker = checker
        self._identities = identities  # service identity -> credential id (cached, invalidated)
        self._lookup = lookup
        self._max_entries = max_entries
        self._principals: dict[str, _Entry] = {}

    async def verify(self, credential: PresentedCredential, now: datetime) -> Principal | Refusal:
        result = self._identity(credential.token, now)
        if isinstance(result, Refusal):
            return result
        identity, not_after = result
        credential_id = await self._identities(identity)
        record = await self._lookup(credential_id) if credential_id else None
        # Exact: the stored identity itself, whatever a cache or a database collation matched.
        if record is None or record.kind != self.kind or record.service_identity != identity:
            message = "no service identity is registered for it"
            # The identity is no secret, and the operator needs it to register the workload.
            return refuse(reasons.SERVICE_IDENTITY_UNKNOWN, message, detail=f"identity {identity[:255]}")
        refusal = state_refusal(record, now, "the service identity")
        return refusal or self._principal(credential.token, record, not_after)

    def _identity(self, token: str, now: datetime) -> tuple[str, datetime | None] | Refusal:
        if not token.startswith(_PEM_BEGIN):
            bare = self.checker.bare_identity(token)
            return bare if isinstance(bare, Refusal) else (bare, None)
        verified = self.checker.check(token, now)
        if isinstance(verified, Refusal):
            return verified
        return verified.identity, verified.not_after

    def _principal(self, token: str, record: Credential, not_after: datetime | None) -> Principal:
        entry = self._principals.get(token)
        if entry is not None and entry[0] is record:
            return entry[1]
        expiry = min((t for t in (record.expires_at, not_after) if t is not None), default=None)
        principal = Principal(
            id=record.id,
            kind=CredentialKind.CLIENT_CERTIFICATE,
            transport=Transport.CLIENT_CERTIFICATE,
            credential_id=record.id,
            organization_id=record.organization_id or "",
            permissions=frozenset(record.permissions),
            expires_at=expiry,
            event_types_allowed=tuple(record.event_types_allowed),
            event_types_denied=tuple(record.event_types_denied),
        )
        self._principals[token] = (record, principal)
        trim_oldest(self._principals, self._max_entries)
        return principal

    # The principals kept are invalidated like every per-credential cache (`watchword.caches`).
    def invalidate(self, credential_id: str) -> None:
        stale = [key for key, (record, _) in self._principals.items() if record.id == credential_id]
        for key in stale:
            del self._principals[key]

    def clear(self) -> None:
        self._principals.clear()

    def __len__(self) -> int:
        return len(self._principals)
