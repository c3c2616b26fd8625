"""I4, I6: a stored credential's next secret. Minted like its first and shown once; hashed; sealed too
when the secret is also a key Watchword must use (C4, C7, and whatever was sealed at creation, such as a
C9 client_secret_jwt client's). The previous secret keeps verifying until the overlap ends, then stops,
and so does every token minted from it (I6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from watchword import secret_format
from watchword.crypto.master_key import MasterKey
from watchword.domain import CredentialKind
from watchword.identify.sealed_keys import SEALED_KINDS, seal
from watchword.store.models import Credential

MAX_OVERLAP = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class NextSecret:
    secret: str  # shown once, in the rotation's answer
    secret_hash: str
    sealed_secret: bytes | None
    previous_valid_until: datetime | None  # None: the previous secret stops verifying at once


def next_secret(record: Credential, overlap: timedelta, master_key: MasterKey, now: datetime) -> NextSecret:
    kind = CredentialKind(record.kind)
    secret = secret_format.mint(kind, record.id)
    sealed = record.sealed_secret is not None or kind in SEALED_KINDS
    return NextSecret(
        secret=secret,
        secret_hash=secret_format.hash_secret(secret),
        sealed_secret=seal(master_key, record.id, secret) if sealed else None,
        previous_valid_until=now + overlap if overlap else None,
    )
