"""HMAC keys from sealed credential secrets (C4 tenant signing secrets, C7 connector secrets).

Opening a sealed secret costs an AES-GCM decryption; the prepared keys are kept per credential and
rebuilt only when the stored sealed values change (a rotation), so verification does no crypto setup.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from watchword import reasons
from watchword.crypto.master_key import MasterKey
from watchword.domain import CredentialKind
from watchword.jose import jws
from watchword.jose.jwk import VerificationKey, hmac_key
from watchword.store.models import Credential

MAX_ENTRIES = 10_000
# Kinds whose secret is also an HMAC key Watchword must use (C4 tokens, C7 tokens): sealed, not only hashed.
SEALED_KINDS = frozenset({CredentialKind.CONNECTOR, CredentialKind.TENANT_SIGNING_SECRET})


def sealing_purpose(credential_id: str) -> str:
    return f"watchword.credential:{credential_id}"


def seal(master_key: MasterKey, credential_id: str, secret: str) -> bytes:
    """A credential's secret sealed at rest, for `SealedKeys` to open again."""
    return master_key.seal(secret.encode("ascii"), sealing_purpose(credential_id))


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
