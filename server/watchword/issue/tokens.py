"""Minting Watchword's own access tokens (C8): JWTs with `typ: at+jwt` (RFC 9068) signed with the active
signing key (I5). `issue/keyring` owns the key; this module only shapes and signs the claims."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

from watchword.domain import Subject
from watchword.jose.sign import sign_jwt

TOKEN_TYPE = "at+jwt"


class ActiveKeyLike(Protocol):
    kid: str
    algorithm: str
    private_key: Any


class SigningKeySource(Protocol):
    async def current(self) -> ActiveKeyLike:
        """The key to sign with now (a rotation on another replica is noticed within seconds)."""
        ...


@dataclass(frozen=True, slots=True)
class TokenSettings:
    issuer: str
    audience: str
    default_lifetime: int = 3600
    max_lifetime: int = 86400


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    token_id: str
    expires_in: int
    scope: tuple[str, ...]


def lifetime(settings: TokenSettings, requested: int) -> int:
    """The requested lifetime (0: the default), never more than the configured maximum."""
    return min(requested or settings.default_lifetime, settings.max_lifetime)


def mint(
    key: ActiveKeyLike,
    settings: TokenSettings,
    *,
    subject: str,
    client_id: str,
    organization_id: str,
    scope: tuple[str, ...],
    expires_in: int,
    credential_id: str | None = None,
    secret_version: str = "",
    acting_as: Subject | None = None,
    audience: str = "",
) -> IssuedToken:
    now = int(time.time())
    token_id = secrets.token_urlsafe(18)
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": audience or settings.audience,
        "sub": subject,
        "client_id": client_id,
        "iat": now,
        "exp": now + expires_in,
        "jti": token_id,
        "organization_id": organization_id,
        "scope": " ".join(scope),
    }
    if credential_id:
        claims["credential_id"] = credential_id
    if credential_id and secret_version:
        # Which of the credential's secrets it was minted from: it dies when that one stops verifying (I6).
        claims["secret_version"] = secret_version
    if acting_as is not None:
        claims["subject_type"] = acting_as.type
        claims["subject_id"] = acting_as.id
    token = sign_jwt(claims, key.private_key, key.algorithm, {"kid": key.kid, "typ": TOKEN_TYPE})
    return IssuedToken(access_token=token, token_id=token_id, expires_in=expires_in, scope=scope)
