"""HMAC keys from sealed credential secrets (C4 tenant signing secrets, C7 connector secrets, C9
client_secret_jwt clients), and the signature check with them.

Opening a sealed secret costs an AES-GCM decryption; the prepared keys are kept per credential and
rebuilt only when the stored sealed values change (a rotation), so verification does no crypto setup.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from datetime import datetime

from watchword import reasons
from watchword.crypto.master_key import MasterKey
from watchword.domain import Refusal
from watchword.identify.credential_state import state_refusal
from watchword.identify.verifier import CredentialLookup, JwtSettings, refusal_for, refuse
from watchword.jose import claims as jwt_claims
from watchword.jose import jws
from watchword.jose.jwk import VerificationKey, hmac_key
from watchword.store.models import Credential

MAX_ENTRIES = 10_000
KEY_REASONS = frozenset({reasons.TOKEN_SIGNATURE_INVALID, reasons.TOKEN_KEY_UNKNOWN})
SIGNATURE_MESSAGE = "the token's signature does not verify with any key of its signer"


def sealing_purpose(credential_id: str) -> str:
    return f"watchword.credential:{credential_id}"


class SealedKeys:
    def __init__(self, master_key: MasterKey) -> None:
        self._master_key = master_key
        self._keys: OrderedDict[str, tuple[bytes | None, bytes | None, list[VerificationKey]]] = OrderedDict()

    def _open(self, record: Credential, sealed: bytes | None, algorithm: str) -> VerificationKey | None:
        if sealed is None:
            return None
        secret = self._master_key.open(sealed, sealing_purpose(record.id))
        return hmac_key(secret, kid=record.id, algorithm=algorithm)

    def keys(self, record: Credential, now: datetime, algorithm: str = "HS256") -> list[VerificationKey]:
        """The current key, then the previous one while its rotation overlap lasts."""
        # Each stored attribute read once: they are ORM attributes, and this runs for every token.
        credential_id, sealed, previous_sealed = (
            record.id,
            record.sealed_secret,
            record.previous_sealed_secret,
        )
        cached = self._keys.get(credential_id)
        if cached is None or cached[0] != sealed or cached[1] != previous_sealed:
            keys = [self._open(record, sealed, algorithm), self._open(record, previous_sealed, algorithm)]
            cached = (sealed, previous_sealed, [k for k in keys if k is not None])
            self._keys[credential_id] = cached
            while len(self._keys) > MAX_ENTRIES:
                self._keys.popitem(last=False)
        self._keys.move_to_end(credential_id)
        current, *previous = cached[2]
        valid_until = record.previous_secret_valid_until
        return [current, *previous] if valid_until is not None and now < valid_until else [current]

    def invalidate(self, credential_id: str) -> None:
        """Forget a changed credential's keys (a rotation is noticed anyway: the sealed values differ)."""
        self._keys.pop(credential_id, None)

    def clear(self) -> None:
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)


def verify_with_any(parsed: jws.ParsedJws, keys: list[VerificationKey]) -> int:
    """Accept a signature by any of `keys` (the current secret, then the previous during an overlap);
    the index of the one that verified."""
    failure: jws.JwsError | None = None
    for index, key in enumerate(keys):
        try:
            jws.verify(parsed, key)
            return index
        except jws.JwsError as exc:
            failure = exc
    raise failure or jws.JwsError(reasons.TOKEN_KEY_UNKNOWN, "no key to verify with")


def key_refusal(detail: str) -> Refusal:
    """An unknown signing key and a wrong signature look the same to the caller, so nobody learns which
    ids name a signing secret or a connector (C4, C7); `detail` tells them apart in the audit log only."""
    return refuse(reasons.TOKEN_SIGNATURE_INVALID, SIGNATURE_MESSAGE, detail)


def verify_sealed(
    parsed: jws.ParsedJws,
    record: Credential,
    sealed_keys: SealedKeys,
    now: datetime,
    algorithms: Collection[str],
) -> int | Refusal:
    """C4/C7: check the signature with the record's current secret, or its previous one during an
    overlap; the index of the one that verified (0 current, 1 previous), or the refusal."""
    try:
        jws.allowed(parsed, algorithms)
        return verify_with_any(parsed, sealed_keys.keys(record, now, parsed.algorithm))
    except jws.JwsError as exc:
        return key_refusal(str(exc)) if exc.reason in KEY_REASONS else refusal_for(exc)


class SealedSecretJwtVerifier:
    """What the verifiers of JWTs signed with a stored, sealed secret (C4, C7) are built with, and how
    such a token is checked once its signer's record is found: no issuer or audience of Watchword's, a
    bounded lifetime."""

    required_claims: tuple[str, ...] = ("iat", "exp")

    def __init__(self, lookup: CredentialLookup, sealed_keys: SealedKeys, settings: JwtSettings) -> None:
        self._lookup = lookup
        self._sealed_keys = sealed_keys
        self._leeway = settings.leeway_seconds
        self._max_lifetime = settings.max_tenant_token_lifetime_seconds

    def _signed_and_valid(
        self,
        parsed: jws.ParsedJws,
        record: Credential,
        now: datetime,
        algorithms: Collection[str],
        signer: str,
    ) -> int | Refusal:
        """The signature by `record`'s secret (the index of the one that verified: 0 current, 1 previous),
        then the signer still usable (S6), then the claims; or the first refusal."""
        used = verify_sealed(parsed, record, self._sealed_keys, now, algorithms)
        if isinstance(used, Refusal):
            return used
        refusal = state_refusal(record, now, signer) or self._claims_refusal(parsed.claims, now)
        return used if refusal is None else refusal

    def _claims_refusal(self, claims: dict[str, object], now: datetime) -> Refusal | None:
        try:
            jwt_claims.validate(
                claims,
                now=now.timestamp(),
                leeway=self._leeway,
                issuer=None,
                audience=None,
                required=self.required_claims,
                max_lifetime=self._max_lifetime,
            )
        except jwt_claims.ClaimsError as exc:
            return refusal_for(exc)
        return None
