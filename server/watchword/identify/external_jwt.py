"""C1: JWTs from external OIDC issuers such as Keycloak, verified against each issuer's JWKS.

The order matters (RFC 8725): the unverified `iss` only picks which issuer's settings and keys to try;
the algorithm is checked against that issuer's allow-list before any key is looked up; the key is found
by `kid` (an opaque id, only ever a dictionary key); the signature is verified with the key's own bound
algorithm; only then are the claims trusted (iss, aud, exp, nbf, iat) and read into a Principal.
Header fields that name keys elsewhere (`jku`, `x5u`, `jwk`, `x5c`) are never fetched or used.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeGuard

import httpx

from watchword import reasons
from watchword.domain import CredentialKind, Principal, Refusal, Transport
from watchword.identify.issuer_settings import IssuerSettings, by_issuer
from watchword.identify.jwks_source import HTTP_TIMEOUT, Clock, JwksSource
from watchword.identify.verifier import PresentedJwt, refuse
from watchword.jose import claims as jwt_claims
from watchword.jose import jws

REQUIRED_CLAIMS = ("exp", "iss", "aud")
MAX_ID_LENGTH = 1024
MAX_MEMBERSHIPS = 1000

Memberships = tuple[tuple[str, tuple[str, ...]], ...]

_MESSAGES = {
    reasons.TOKEN_MALFORMED: "the token is not a well-formed JWT",
    reasons.TOKEN_ALGORITHM_NOT_ALLOWED: "the token's algorithm is not accepted for its issuer",
    reasons.TOKEN_HEADER_UNSUPPORTED: "the token's header is not supported",
    reasons.TOKEN_KEY_UNKNOWN: "the token's signing key is not known",
    reasons.TOKEN_SIGNATURE_INVALID: "the token's signature is not valid",
    reasons.TOKEN_EXPIRED: "the token has expired",
    reasons.TOKEN_NOT_YET_VALID: "the token is not valid yet",
    reasons.TOKEN_ISSUER_UNKNOWN: "the token's issuer is not trusted",
    reasons.TOKEN_AUDIENCE_MISMATCH: "the token is not meant for this service",
    reasons.TOKEN_CLAIMS_INVALID: "the token's claims are missing or invalid",
    reasons.TOKEN_TYPE_NOT_ACCEPTED: "an ID token (or another kind of token) is not an access token",
    reasons.TOKEN_CLIENT_NOT_ALLOWED: "the token was issued to a client this service does not accept",
    reasons.TRANSPORT_NOT_ALLOWED: "this credential is not accepted over this transport",
}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_HEADER_CHARS = 4096
_MISSING = object()
# Keycloak's own `typ` claim: "Bearer" on access tokens, "ID" on ID tokens, "Refresh", "Logout"...
BEARER_TYP = "bearer"


class _ClaimsInvalid(Exception):
    """A configured claim is present but not of the expected shape."""


def _refused(reason: str) -> Refusal:
    """C1 refusals carry fixed messages only: nothing an issuer's token or JWKS said is echoed."""
    if reason not in _MESSAGES:  # a reason the JOSE core added later: still stable, never free text
        reason = reason if reason in reasons.REASONS else reasons.TOKEN_MALFORMED
    return refuse(reason, _MESSAGES.get(reason, "the token was refused"))


def claim_at(claims: Mapping[str, object], path: str) -> object:
    """The value at a dotted path (`realm_access.roles`), or `_MISSING`."""
    if "." not in path:  # the usual `sub`: one lookup
        return claims.get(path, _MISSING)
    value: object = claims
    for name in path.split("."):
        if not isinstance(value, Mapping) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _non_empty_string(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def _roles(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(_non_empty_string(role) for role in value):
        raise _ClaimsInvalid
    return tuple(sorted(set(value)))


def _group_path(entry: str) -> tuple[str, str] | None:
    """Keycloak's `groups` claim: "/<organization>/<role>", with or without the leading slash (deeper
    paths: the last two segments). A group of one segment names no organization and is ignored: such
    claims hold other groups too."""
    segments = [segment for segment in entry.split("/") if segment]
    if len(segments) < 2:
        return None
    return segments[-2], segments[-1]


def _organizations(value: object) -> dict[str, set[str]]:
    """{org_id: [roles]}, ["org_id:role", ...] (the role after the last colon), or Keycloak group paths
    ["/org_id/role", ...] (any entry with a slash, leading or not)."""
    found: dict[str, set[str]] = {}
    if isinstance(value, Mapping):
        for organization, roles in value.items():
            if not _non_empty_string(organization):
                raise _ClaimsInvalid
            found.setdefault(organization, set()).update(_roles(roles))
    elif isinstance(value, list):
        for entry in value:
            if isinstance(entry, str) and "/" in entry:
                pair = _group_path(entry)
                if pair is not None:
                    found.setdefault(pair[0], set()).add(pair[1])
                continue
            organization, _, role = entry.rpartition(":") if isinstance(entry, str) else ("", "", "")
            if not _non_empty_string(organization) or not _non_empty_string(role):
                raise _ClaimsInvalid
            found.setdefault(organization, set()).add(role)
    else:
        raise _ClaimsInvalid
    return found


def _one_organization(value: object, settings: IssuerSettings) -> str | None:
    """The organization named by `organization_claim`, None when it names none."""
    if value is _MISSING:
        return None
    if settings.organization_claim_format == "id":
        if not _non_empty_string(value):
            raise _ClaimsInvalid
        return value
    return _keycloak_organization(value, settings.organization_claim_format == "keycloak_id")


def _keycloak_entries(value: object) -> list[tuple[object, object]]:
    """(alias, attributes) pairs of "alias", ["alias", ...] or {alias: {"id": ..., attributes}}."""
    if isinstance(value, str):
        return [(value, {})]
    if isinstance(value, list) and all(isinstance(alias, str) for alias in value):
        return [(alias, {}) for alias in dict.fromkeys(value)]
    if isinstance(value, Mapping):
        return list(value.items())
    raise _ClaimsInvalid


def _keycloak_organization(value: object, by_id: bool) -> str | None:
    """Keycloak 26's organization membership mapper. Realm roles are not per organization, so the claim
    must name one organization (the client asks for it with the scope `organization:<alias>`); an empty
    one grants nothing."""
    entries = _keycloak_entries(value)
    if not entries:
        return None
    if len(entries) > 1:
        raise _ClaimsInvalid
    alias, attributes = entries[0]
    if not isinstance(attributes, Mapping):
        raise _ClaimsInvalid
    name = attributes.get("id") if by_id else alias
    if not _non_empty_string(name):
        raise _ClaimsInvalid
    return name


def memberships(claims: Mapping[str, object], settings: IssuerSettings) -> Memberships:
    """The (organization, sorted roles) pairs the configured claims grant; a missing claim grants none, a
    claim of the wrong shape raises `_ClaimsInvalid` (a misconfiguration should be seen, not ignored)."""
    if settings.organizations_claim is None and settings.organization_claim is None:
        return ()  # roles come from the stored memberships only
    found: dict[str, set[str]] = {}
    if settings.organizations_claim is not None:
        value = claim_at(claims, settings.organizations_claim)
        if value is not _MISSING:
            found = _organizations(value)
    elif settings.organization_claim is not None and settings.roles_claim is not None:
        organization = _one_organization(claim_at(claims, settings.organization_claim), settings)
        roles = claim_at(claims, settings.roles_claim)
        if organization is not None:
            found = {organization: set(_roles(roles)) if roles is not _MISSING else set()}
    if len(found) > MAX_MEMBERSHIPS:
        raise _ClaimsInvalid
    return tuple((org, tuple(sorted(roles))) for org, roles in sorted(found.items()) if roles)


def bound_memberships(granted: Memberships, settings: IssuerSettings) -> tuple[Memberships, tuple[str, ...]]:
    """S7: the memberships in organizations the issuer is bound to, and the organizations it is not
    bound to (their roles are dropped: an issuer never grants roles beyond its `organizations`)."""
    kept = tuple(entry for entry in granted if settings.binds(entry[0]))
    if len(kept) == len(granted):
        return granted, ()
    return kept, tuple(org for org, _roles in granted if not settings.binds(org))


def _is_access_token_typ(typ: str) -> bool:
    # RFC 7515 §4.1.9: "application/" may be left out, compared case-insensitively. "JWT" is what most
    # IdPs (Keycloak included) put on every token; "at+jwt" (RFC 9068) and vendor "...at+jwt" are access
    # tokens; any other explicit type (id_token+jwt, logout+jwt, dpop+jwt...) is something else.
    typ = typ.lower().removeprefix("application/")
    return typ == "jwt" or typ.endswith("at+jwt")


def _access_token_refusal(parsed: jws.ParsedJws, settings: IssuerSettings) -> Refusal | None:
    """An ID token (Keycloak's `typ: ID` claim, or an explicit header type) is not an access token, even
    when its audience matches; and the client it was issued to (`azp`) must be allowed, where configured."""
    claims, header_typ = parsed.claims, parsed.header.get("typ")
    typ_claim = claims.get("typ")
    if header_typ is not None and not (isinstance(header_typ, str) and _is_access_token_typ(header_typ)):
        return _refused(reasons.TOKEN_TYPE_NOT_ACCEPTED)
    if typ_claim is not None and not (isinstance(typ_claim, str) and typ_claim.lower() == BEARER_TYP):
        return _refused(reasons.TOKEN_TYPE_NOT_ACCEPTED)
    if settings.allowed_clients and claims.get("azp") not in settings.allowed_clients:
        return _refused(reasons.TOKEN_CLIENT_NOT_ALLOWED)
    return None


class ExternalJwtVerifier:
    """Verifies C1 tokens of the configured issuers. `await start()` before use, `await close()` after."""

    kind = CredentialKind.EXTERNAL_JWT

    def __init__(
        self,
        issuers: Sequence[IssuerSettings],
        client: httpx.AsyncClient | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._settings = by_issuer(issuers)
        self._owns_client = client is None and any(entry.jwks_file is None for entry in issuers)
        if self._owns_client:
            client = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        self._client = client
        # Per issuer: the claims every token must carry (iss, aud, exp, then the issuer's own list).
        self._required = {
            issuer: tuple(dict.fromkeys(REQUIRED_CLAIMS + entry.required_claims))
            for issuer, entry in self._settings.items()
        }
        self.sources: dict[str, JwksSource] = {
            issuer: JwksSource(settings, client, clock) for issuer, settings in self._settings.items()
        }

    @property
    def issuers(self) -> frozenset[str]:
        return frozenset(self._settings)

    def roles_source(self, issuer: str) -> str:
        """S1: "claims", "memberships" or "both" for this issuer's users."""
        settings = self._settings.get(issuer)
        return settings.roles_source if settings is not None else "claims"

    def settings(self, issuer: str) -> IssuerSettings | None:
        return self._settings.get(issuer)

    async def start(self, *, prime: bool = True) -> None:
        """Load every static JWKS file (a bad one raises JwksSourceError: a start-up error) and, with
        `prime`, fetch every remote key set concurrently. A remote issuer that is down does not fail the
        start: it is logged, and its keys are fetched again when a token needs them."""
        await asyncio.gather(*(source.start(prime=prime) for source in self.sources.values()))

    async def close(self) -> None:
        await asyncio.gather(*(source.close() for source in self.sources.values()))
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    def recognises(self, jwt: PresentedJwt) -> bool:
        """Last in the registry's order: any JWT no other verifier took must come from an issuer here."""
        return True

    async def verify(self, jwt: PresentedJwt, now: datetime) -> Principal | Refusal:
        parsed, transport = jwt.parsed, jwt.presented.transport
        issuer = parsed.claims.get("iss")
        if not isinstance(issuer, str):
            return _refused(reasons.TOKEN_CLAIMS_INVALID)
        settings = self._settings.get(issuer)
        if settings is None:
            return _refused(reasons.TOKEN_ISSUER_UNKNOWN)
        refusal = await self._check_signature(parsed, settings)
        if refusal is not None:
            return refusal
        try:
            jwt_claims.validate(
                parsed.claims,
                now=now.timestamp(),
                leeway=settings.leeway_seconds,
                issuer=settings.issuer,
                audience=settings.audiences,
                required=self._required[issuer],
            )
        except jwt_claims.ClaimsError as exc:  # also iat in the future, and sub/jti of the wrong type
            return _refused(exc.reason)
        refusal = _access_token_refusal(parsed, settings)
        if refusal is not None:
            return refusal
        return self._principal(parsed.claims, settings, transport)

    async def _check_signature(self, parsed: jws.ParsedJws, settings: IssuerSettings) -> Refusal | None:
        try:
            jws.allowed(parsed, settings.algorithms)  # before any key lookup or fetch
        except jws.JwsError as exc:
            return _refused(exc.reason)
        kid = parsed.kid
        if kid is not None and not isinstance(kid, str):
            return _refused(reasons.TOKEN_MALFORMED)
        key = await self.sources[settings.issuer].key(kid)
        if key is None or key.is_secret:
            return _refused(reasons.TOKEN_KEY_UNKNOWN)
        try:
            jws.verify(parsed, key)
        except jws.JwsError as exc:
            return _refused(exc.reason)
        return None

    @staticmethod
    def _principal(
        claims: Mapping[str, object], settings: IssuerSettings, transport: Transport
    ) -> Principal | Refusal:
        user_id = claim_at(claims, settings.user_id_claim)
        if not _non_empty_string(user_id):
            return _refused(reasons.TOKEN_CLAIMS_INVALID)
        try:
            granted, unbound = bound_memberships(memberships(claims, settings), settings)
        except _ClaimsInvalid:
            return _refused(reasons.TOKEN_CLAIMS_INVALID)
        expires = claims["exp"]
        assert isinstance(expires, int | float)  # claims.validate checked it
        token_id = claims.get("jti")
        return Principal(
            id=user_id,
            kind=CredentialKind.EXTERNAL_JWT,
            transport=transport,
            unbound_organizations=unbound,
            issuer=settings.issuer,
            memberships=granted,
            expires_at=datetime.fromtimestamp(expires, UTC),
            token_id=token_id if isinstance(token_id, str) and len(token_id) <= MAX_ID_LENGTH else "",
        )
