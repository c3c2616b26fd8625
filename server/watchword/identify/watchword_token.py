"""C8 Watchword's own tokens: JWTs signed with Watchword's asymmetric keys (I5), `typ` at+jwt (RFC 9068).

Claims: `iss` (the configured token issuer), `aud`, `sub`, `iat`, `exp`, `jti`, `organization_id`,
`scope` (space-separated action names) and, for tokens derived from a stored credential (an API key
exchange, a client credentials grant, a subject token), `credential_id` and `secret_version` (which of
its secrets it was minted from): when that credential is deactivated or gone, or that secret stops
verifying (a rotation, at the end of its overlap), every token minted from it is refused (I6, S6).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from watchword import reasons
from watchword.domain import SUBJECT_ACTIONS, CredentialKind, Principal, Refusal, Subject, Transport
from watchword.identify.credential_state import is_usable, secret_still_verifies
from watchword.identify.verifier import (
    CredentialLookup,
    JwtSettings,
    PresentedJwt,
    refusal_for,
    refuse,
)
from watchword.jose import claims as jwt_claims
from watchword.jose import jws
from watchword.jose.jwk import KeySetError, VerificationKey, load_jwk, public_key
from watchword.store.models import Credential, SigningKey

ALGORITHMS = frozenset({"ES256", "EdDSA", "RS256"})
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "organization_id")
TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
REFRESH_MIN_INTERVAL = 1.0

KeyLister = Callable[[], Awaitable[list[SigningKey]]]


class SigningKeyRing:
    """Watchword's public keys by `kid`. Reloaded when the change feed announces a new signing key, and,
    should a token with an unknown kid arrive first (a key rotated on another replica moments ago), once
    before refusing it: concurrent callers share that one reload, and there is at most one per
    `REFRESH_MIN_INTERVAL` seconds, so a flood of made-up kids costs one query per second."""

    def __init__(self, list_keys: KeyLister, clock: Callable[[], float] = time.monotonic) -> None:
        self._list_keys = list_keys
        self._clock = clock
        # The key this replica signs with right now (set by the app): a token it has just signed after a
        # rotation verifies here at once, without waiting for a reload.
        self.local: Callable[[], Any] | None = None
        self._local_key: tuple[str, VerificationKey] | None = None
        self._keys: dict[str | None, tuple[VerificationKey, datetime | None]] = {}
        self._attempted_at = float("-inf")  # when the last reload began (successful or not)
        self._pending: asyncio.Future[None] | None = None
        # Reloads can overlap (an announced rotation during an unknown-kid reload): the one that began
        # last wins, so a query that read the store before the rotation never installs after it.
        self._begun = 0
        self._installed = 0
        self.reloads = 0  # completed reloads: for tests and metrics

    async def reload(self) -> None:
        """Read every key from the store now (at start, and when a rotation is announced)."""
        self._attempted_at = self._clock()  # a fresh ring needs no reload for an unknown kid right after
        self._begun += 1
        mine = self._begun
        keys: dict[str | None, tuple[VerificationKey, datetime | None]] = {}
        now = datetime.now(UTC)
        for row in await self._list_keys():
            if row.retires_at is not None and row.retires_at <= now:
                continue
            try:
                keys[row.kid] = (load_jwk(json.loads(row.public_jwk)), row.retires_at)
            except (KeySetError, ValueError):
                continue  # an unusable stored key verifies nothing; the others still do
        if mine > self._installed:
            self._keys, self._installed = keys, mine
        self.reloads += 1

    async def _reload_for_unknown_kid(self) -> None:
        if self._pending is not None:
            await asyncio.shield(self._pending)
            return
        if self._clock() - self._attempted_at < REFRESH_MIN_INTERVAL:
            return
        self._pending = asyncio.ensure_future(self.reload())
        try:
            await asyncio.shield(self._pending)
        finally:
            self._pending = None

    def _local_signing_key(self, kid: str | None) -> VerificationKey | None:
        if self.local is None or kid is None:
            return None
        active = self.local()
        if active.kid != kid:
            return None
        if self._local_key is None or self._local_key[0] != kid:
            self._local_key = (
                kid,
                public_key(active.private_key.public_key(), kid=kid, algorithm=active.algorithm),
            )
        return self._local_key[1]

    async def key(self, kid: str | None) -> VerificationKey | None:
        """The key with this kid, unless it has retired (checked on every call, not only at reload)."""
        entry = self._keys.get(kid)
        if entry is None:
            local = self._local_signing_key(kid)
            if local is not None:
                return local
        if entry is None:
            await self._reload_for_unknown_kid()
            entry = self._keys.get(kid)
        if entry is None:
            return None
        key, retires_at = entry
        return key if retires_at is None or datetime.now(UTC) < retires_at else None


class WatchwordTokenVerifier:
    """C8: a JWT whose `iss` is Watchword's own token issuer."""

    kind = CredentialKind.WATCHWORD_TOKEN

    def __init__(self, ring: SigningKeyRing, lookup: CredentialLookup, settings: JwtSettings) -> None:
        self._ring = ring
        self._lookup = lookup
        self._issuer = settings.token_issuer
        self._audience = settings.token_audience
        self._leeway = settings.leeway_seconds

    def recognises(self, jwt: PresentedJwt) -> bool:
        return jwt.parsed.claims.get("iss") == self._issuer

    async def verify(self, jwt: PresentedJwt, now: datetime) -> Principal | Refusal:
        parsed = jwt.parsed
        typ = parsed.header.get("typ")
        if not isinstance(typ, str) or typ not in TOKEN_TYPES:  # a list or object cannot even be looked up
            return refuse(reasons.TOKEN_CLAIMS_INVALID, "a Watchword token has typ at+jwt")
        refusal = await self._signature_and_claims_refusal(parsed, now)
        if refusal is not None:
            return refusal
        return await self._principal(parsed.claims, jwt.presented.transport, now)

    async def _signature_and_claims_refusal(self, parsed: jws.ParsedJws, now: datetime) -> Refusal | None:
        try:
            jws.allowed(parsed, ALGORITHMS)
            key = await self._ring.key(parsed.kid)
            if key is None:
                return refuse(reasons.TOKEN_KEY_UNKNOWN, "no Watchword signing key has the token's kid")
            jws.verify(parsed, key)
            jwt_claims.validate(
                parsed.claims,
                now=now.timestamp(),
                leeway=self._leeway,
                issuer=self._issuer,
                audience=self._audience,
                required=REQUIRED_CLAIMS,
            )
        except (jws.JwsError, jwt_claims.ClaimsError) as exc:
            return refusal_for(exc)
        return None

    async def _principal(
        self, claims: dict[str, object], transport: Transport, now: datetime
    ) -> Principal | Refusal:
        subject, organization_id, token_id = claims["sub"], claims["organization_id"], claims["jti"]
        scope, credential_id = claims.get("scope", ""), claims.get("credential_id")
        if not all(isinstance(v, str) and v for v in (subject, organization_id, token_id)) or not isinstance(
            scope, str
        ):
            return refuse(reasons.TOKEN_CLAIMS_INVALID, "sub, organization_id, jti and scope must be strings")
        source: Credential | None = None
        if credential_id is not None:
            version = claims.get("secret_version")
            source = await _source(credential_id, version, str(organization_id), self._lookup, now)
            if isinstance(source, Refusal):
                return source
        acting_as = _acting_as(claims)
        if acting_as is _INVALID:
            return refuse(
                reasons.TOKEN_CLAIMS_INVALID, "subject_type must be user or account, with a subject_id"
            )
        permissions = frozenset(scope.split())
        if acting_as is not None:
            # I3: a token acting as one subject is a subject-scoped principal (C7), limited as S5 says.
            permissions &= SUBJECT_ACTIONS
        return Principal(
            id=str(subject),
            kind=CredentialKind.SUBJECT_JWT if acting_as is not None else CredentialKind.WATCHWORD_TOKEN,
            transport=transport,
            credential_id=str(credential_id or ""),
            organization_id=str(organization_id),
            subject=acting_as if isinstance(acting_as, Subject) else None,
            permissions=permissions,
            expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),  # type: ignore[arg-type]
            issuer=self._issuer,
            # A token minted from an API key keeps obeying that key's event filters, as they are now (S3).
            event_types_allowed=tuple(source.event_types_allowed) if source is not None else (),
            event_types_denied=tuple(source.event_types_denied) if source is not None else (),
            token_id=str(token_id),
            # Passed on (an internal token minted for this principal dies with the same secret).
            secret_version=str(claims.get("secret_version") or ""),
        )


async def _source(
    credential_id: object, version: object, organization_id: str, lookup: CredentialLookup, now: datetime
) -> Credential | Refusal:
    """The credential a token was minted from, while it is usable and the secret the token was minted
    from still verifies (I6, S6): a rotation ends the token with its secret's overlap."""
    if not isinstance(credential_id, str) or not (version is None or isinstance(version, str)):
        return refuse(reasons.TOKEN_CLAIMS_INVALID, "credential_id and secret_version must be strings")
    source = await lookup(credential_id)
    if source is None or not is_usable(source, now) or source.organization_id != organization_id:
        return refuse(
            reasons.CREDENTIAL_DEACTIVATED, "the credential this token was minted from is deactivated"
        )
    if not secret_still_verifies(source, version, now):
        return refuse(
            reasons.CREDENTIAL_ROTATED, "the secret this token was minted from has been rotated away"
        )
    return source


_INVALID = object()


def _acting_as(claims: dict[str, object]) -> Subject | object | None:
    """I3 tokens name the subject they act as; others carry neither claim."""
    kind, identifier = claims.get("subject_type"), claims.get("subject_id")
    if kind is None and identifier is None:
        return None
    if kind not in ("user", "account") or not isinstance(identifier, str) or not 0 < len(identifier) <= 255:
        return _INVALID
    return Subject(type=str(kind), id=identifier)
