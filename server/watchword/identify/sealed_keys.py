"""HMAC keys from sealed credential secrets (C4 tenant signing secrets, C7 connector secrets).

Opening a sealed secret costs an AES-GCM decryption; the prepared keys are kept per credential and
rebuilt only when the stored sealed values change (a rotation), so verification does no crypto setup.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from watchword import reasons
from watchword.crypto.master_key import MasterKey
from watchword.jose import jws
from watchword.jose.jwk import VerificationKey, hmac_key
from watchword.store.models import Credential

MAX_ENTRIES = 10_000


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
        cached = self._keys.get(record.id)
        if cached is None or cached[0] != record.sealed_secret or cached[1] != record.previous_sealed_secret:
            keys = [self._open(record, record.sealed_secret, algorithm)]
            keys.append(self._open(record, record.previous_sealed_secret, algorithm))
            cached = (record.sealed_secret, record.previous_sealed_secret, [k for k in keys if k is not None])
            self._keys[record.id] = cached
            while len(self._keys) > MAX_ENTRIES:
                self._keys.popitem(last=False)
        self._keys.move_to_end(record.id)
        current, *previous = cached[2]
        overlap = record.previous_secret_valid_until is not None and now < record.previous_secret_valid_until
        return [current, *previous] if overlap else [current]


def verify_with_any(parsed: jws.ParsedJws, keys: list[VerificationKey]) -> None:
    """Accept a signature by any of `keys` (the current secret, then the previous during an overlap)."""
    failure: jws.JwsError | None = None
    for key in keys:
        try:
            jws.verify(parsed, key)
            return
        except jws.JwsError as exc:
            failure = exc
    raise failure or jws.JwsError(reasons.TOKEN_KEY_UNKNOWN, "no key to verify with")
