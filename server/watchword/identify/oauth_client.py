"""C9 OAuth2 client authentication at the token endpoint: client_secret_basic (with the RFC 6749 §2.3.1
form-encoding), client_secret_post, client_secret_jwt and private_key_jwt (RFC 7523 §2.2, §3); and for
C10 service identities, RFC 8705 §2.1 tls_client_auth (the certificate of the TLS connection, on the
OAuth HTTP port with `http_tls_client_auth`).

Each client is registered for exactly one method and must use it, and only it (RFC 6749 §2.3). A client
assertion must have `iss` = `sub` = the client id, `aud` naming Watchword's token endpoint URL or its
issuer identifier (draft-ietf-oauth-rfc7523bis prefers the issuer), an `exp` at
most an hour away, and a `jti` that is accepted once only: the store records it, so a replay is
refused on every replica sharing the database. IssueToken answers any refusal here with `invalid_client`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from watchword import extract, reasons, secret_format
from watchword.domain import (
    ClientAuthentication,
    CredentialKind,
    PresentedCredential,
    Principal,
    Refusal,
    Transport,
)
from watchword.identify import client_certificate, opaque_secret
from watchword.identify.cache import trim_oldest
from watchword.identify.credential_state import proved_secret_version, state_refusal
from watchword.identify.sealed_keys import SealedKeys, verify_with_any
from watchword.identify.verifier import CredentialLookup, refusal_for, refuse
from watchword.jose import claims as jwt_claims
from watchword.jose import jws
from watchword.jose.jwk import KeySetError, VerificationKey, hmac_key, load_jwk, public_key
from watchword.store.models import Credential

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Seconds between now and `exp`: assertions are short-lived, and their `jti`s are kept until they
# expire. An hour is what common client libraries (authlib) send by default.
MAX_ASSERTION_LIFETIME = 3600.0
SECRET_JWT_ALGORITHMS = frozenset({"HS256"})
PRIVATE_KEY_ALGORITHMS = frozenset({"RS256", "PS256", "ES256", "EdDSA"})

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
MAX_PUBLIC_KEYS = 10_000  # parsed private_key_jwt keys kept, by client and key
# Values of admin.proto's ClientAuthMethod for the assertion methods.
CLIENT_SECRET_JWT, PRIVATE_KEY_JWT = 3, 4

UseAssertion = Callable[[str, str, datetime], Awaitable[bool]]


@functools.cache
def _stand_in_key(algorithm: str) -> VerificationKey:
    """A key no client holds, per algorithm: made once, on first use."""
    if algorithm in SECRET_JWT_ALGORITHMS:
        return hmac_key(secrets.token_bytes(32), kid=None, algorithm=algorithm)
    private: Any
    if algorithm in ("RS256", "PS256"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return public_key(private.public_key(), kid=None, algorithm=algorithm)


def _verify_against_a_stand_in(parsed: jws.ParsedJws) -> None:
    """The signature work a known client's assertion costs, for an unknown or unfit client: the time
    taken does not tell which client ids exist (C9, I2). The result is ignored."""
    if parsed.algorithm in SECRET_JWT_ALGORITHMS | PRIVATE_KEY_ALGORITHMS:
        with contextlib.suppress(jws.JwsError):
            jws.verify(parsed, _stand_in_key(parsed.algorithm))


class PublicKeys:
    """private_key_jwt clients' registered keys, parsed once, by client and key (a new key: a new entry)."""

    def __init__(self, max_entries: int = MAX_PUBLIC_KEYS) -> None:
        self._max_entries = max_entries
        self._keys: dict[tuple[str, str], VerificationKey] = {}

    def get(self, record: Credential) -> VerificationKey | None:
        cache_key = (record.id, record.public_jwk)
        key = self._keys.get(cache_key)
        if key is None:
            try:
                key = load_jwk(json.loads(record.public_jwk))
            except (KeySetError, ValueError):
                return None
            self._keys[cache_key] = key
            trim_oldest(self._keys, self._max_entries)
        return key

    def invalidate(self, credential_id: str) -> None:
        """Forget a changed client's keys (the memory only: a replaced key is a new entry anyway)."""
        for cache_key in [k for k in self._keys if k[0] == credential_id]:
            del self._keys[cache_key]

    def clear(self) -> None:
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)


class ClientAuthenticator:
    def __init__(
        self,
        lookup: CredentialLookup,
        sealed_keys: SealedKeys,
        use_assertion: UseAssertion,
        audiences: str | Collection[str],
        leeway: float,
        max_token_bytes: int = 8192,
    ) -> None:
        self._lookup = lookup
        self._secrets = opaque_secret.OpaqueSecretVerifier(lookup, frozenset())  # C9 secrets grant no actions
        self._sealed_keys = sealed_keys
        self._use_assertion = use_assertion
        self._audiences = frozenset({audiences} if isinstance(audiences, str) else audiences)
        self._leeway = leeway
        self._max_token_bytes = max_token_bytes
        self.public_keys = PublicKeys()
        # C10 (RFC 8705 §2.1): set by the pipeline when client certificates are configured.
        self.certificates: client_certificate.ClientCertificateVerifier | None = None

    def accept_audience(self, audience: str) -> None:
        """Also accept `audience` as an assertion's `aud` (the token endpoint's URL once it is known)."""
        self._audiences = self._audiences | {audience}

    async def verify(self, auth: ClientAuthentication, now: datetime) -> Principal | Refusal:
        if auth.uses_certificate:
            return await self._certificate(auth, now)
        used = [bool(auth.authorization), bool(auth.client_secret), bool(auth.client_assertion)]
        if not any(used) and auth.client_id and self.certificates is not None:
            message = "no client authentication: no secret, assertion or client certificate"
            return refuse(reasons.CLIENT_CERTIFICATE_MISSING, message)
        if sum(used) != 1:
            reason = reasons.CLIENT_AUTH_METHOD_NOT_ALLOWED if sum(used) else reasons.CREDENTIAL_MISSING
            return refuse(reason, "use exactly one client authentication method")
        if auth.authorization:
            return await self._basic(auth, now)
        if auth.client_secret:
            return await self._post(auth, now)
        return await self._assertion(auth, now)

    async def _certificate(self, auth: ClientAuthentication, now: datetime) -> Principal | Refusal:
        """RFC 8705 §2.1 (tls_client_auth): `client_id` names a C10 credential, and the connection's
        certificate verifies and maps to exactly that service identity (C10's verifier: chain, validity,
        SPIFFE id or subject, the credential's state)."""
        if self.certificates is None:
            return refuse(reasons.CLIENT_AUTH_METHOD_NOT_ALLOWED, "client certificates are not accepted")
        if not auth.client_id:
            return refuse(reasons.CREDENTIAL_MALFORMED, "tls_client_auth needs client_id (RFC 8705 §2)")
        principal = await self.certificates.verify(client_certificate.presented(auth.client_certificate), now)
        if isinstance(principal, Refusal):
            return principal
        if principal.credential_id != auth.client_id:
            message = "the client certificate is not the one registered for this client_id"
            return refuse(reasons.CLIENT_CERTIFICATE_MISMATCH, message)
        return principal

    async def _secret(self, presented: PresentedCredential, now: datetime) -> Principal | Refusal:
        """client_secret_basic and client_secret_post: the secret checked like every opaque secret,
        which also holds the client to the method it was registered for."""
        result = await self._secrets.verify(presented, now)
        if isinstance(result, Principal) and result.kind is not CredentialKind.OAUTH_CLIENT:
            return refuse(reasons.CREDENTIAL_UNKNOWN, "the client is not recognised")
        return result

    async def _basic(self, auth: ClientAuthentication, now: datetime) -> Principal | Refusal:
        scheme, _, encoded = auth.authorization.strip(extract.OWS).partition(" ")
        if scheme.lower() != "basic":
            return refuse(reasons.CREDENTIAL_MALFORMED, "client_secret_basic needs `Authorization: Basic`")
        presented = extract.basic_credentials(encoded.strip(extract.OWS), self._max_token_bytes)
        if isinstance(presented, Refusal):
            return presented
        if auth.client_id and auth.client_id != opaque_secret.form_decoded(presented.client_id):
            return refuse(reasons.CREDENTIAL_UNKNOWN, "the client is not recognised")
        return await self._secret(presented, now)

    async def _post(self, auth: ClientAuthentication, now: datetime) -> Principal | Refusal:
        if not auth.client_id:
            return refuse(reasons.CREDENTIAL_MALFORMED, "client_secret_post needs client_id")
        presented = PresentedCredential(
            token=auth.client_secret, transport=Transport.FORM, client_id=auth.client_id
        )
        return await self._secret(presented, now)

    async def _assertion(self, auth: ClientAuthentication, now: datetime) -> Principal | Refusal:
        if auth.client_assertion_type != ASSERTION_TYPE:
            return refuse(reasons.CREDENTIAL_MALFORMED, f"client_assertion_type must be {ASSERTION_TYPE}")
        try:
            parsed = jws.parse(auth.client_assertion, max_bytes=self._max_token_bytes)
        except jws.JwsError as exc:
            return refusal_for(exc)
        typ = parsed.header.get("typ")
        if isinstance(typ, str) and typ in ACCESS_TOKEN_TYPES:
            # An access token is never a client assertion, whoever signed it (RFC 8725 §3.11).
            return refuse(reasons.TOKEN_CLAIMS_INVALID, "an access token is not a client assertion")
        client_id = parsed.claims.get("iss")
        if not isinstance(client_id, str) or not secret_format.is_credential_id(client_id):
            return refuse(reasons.CREDENTIAL_UNKNOWN, "the client is not recognised")
        if (auth.client_id and auth.client_id != client_id) or parsed.claims.get("sub") != client_id:
            return refuse(reasons.TOKEN_CLAIMS_INVALID, "iss and sub must both be the client id")
        record = await self._lookup(client_id)
        if record is None or record.kind != int(CredentialKind.OAUTH_CLIENT):
            _verify_against_a_stand_in(parsed)
            return refuse(reasons.CREDENTIAL_UNKNOWN, "the client is not recognised")
        if record.client_auth_method not in (CLIENT_SECRET_JWT, PRIVATE_KEY_JWT):
            _verify_against_a_stand_in(parsed)
            return refuse(
                reasons.CLIENT_AUTH_METHOD_NOT_ALLOWED, "the client is registered for another method"
            )
        used = 0  # which secret signed: 0 the current one (and for private_key_jwt), 1 the previous
        try:
            if record.client_auth_method == CLIENT_SECRET_JWT:
                jws.allowed(parsed, SECRET_JWT_ALGORITHMS)
                used = verify_with_any(parsed, self._sealed_keys.keys(record, now, parsed.algorithm))
            else:
                jws.allowed(parsed, PRIVATE_KEY_ALGORITHMS)
                key = self.public_keys.get(record)
                if key is None:
                    return refuse(reasons.TOKEN_KEY_UNKNOWN, "the client has no usable registered key")
                jws.verify(parsed, key)
            claims = parsed.claims
            jwt_claims.validate(
                claims,
                now=now.timestamp(),
                leeway=self._leeway,
                issuer=client_id,
                audience=self._audiences,
                required=("iss", "sub", "aud", "exp", "jti"),
            )
        except (jws.JwsError, jwt_claims.ClaimsError) as exc:
            return refusal_for(exc)
        expires = float(claims["exp"])  # type: ignore[arg-type]
        if expires - now.timestamp() > MAX_ASSERTION_LIFETIME + self._leeway:
            return refuse(reasons.TOKEN_CLAIMS_INVALID, "a client assertion must expire within an hour")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= 255:
            return refuse(reasons.TOKEN_CLAIMS_INVALID, "jti must be a string of 1 to 255 characters")
        refusal = state_refusal(record, now, "the client")
        if refusal is not None:
            return refusal
        if not await self._use_assertion(client_id, jti, datetime.fromtimestamp(expires, UTC)):
            return refuse(reasons.TOKEN_REPLAYED, "this client assertion was already used")
        return Principal(
            id=record.id,
            kind=CredentialKind.OAUTH_CLIENT,
            transport=Transport.FORM,
            credential_id=record.id,
            organization_id=record.organization_id or "",
            permissions=frozenset(record.permissions),
            expires_at=record.expires_at,
            token_id=jti,
            secret_version=proved_secret_version(record, bool(used)),
        )
