"""The format of the opaque secrets Watchword mints (C2, C3, C5, C6, C9 secrets, admin tokens).

    wwak_3Fh9QdLrT0aZx2Bc_h2V...32 chars...Q1w9Zk
    ^^^^ ^^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    kind id (16 base62)   secret (32 base62) + checksum (6 base62, CRC32 of everything before it)

Like GitHub's tokens: the readable prefix tells a human (and secret scanners) what leaked, the id names
the stored credential so verification is one lookup by primary key, and the checksum lets malformed or
mistyped input be refused without touching the store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from watchword.domain import CredentialKind
from watchword.identify.kinds import PREFIXES  # one per mintable kind: its row in the kinds table

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 16
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6

_KIND_BY_PREFIX = {prefix: kind for kind, prefix in PREFIXES.items()}
TOKEN_LENGTH = 4 + 1 + ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH
_PATTERN = re.compile(
    rf"(ww[a-z]{{2}})_([0-9A-Za-z]{{{ID_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH + CHECKSUM_LENGTH}}})"
)
_ID_PATTERN = re.compile(rf"[0-9A-Za-z]{{{ID_LENGTH}}}")


@dataclass(frozen=True, slots=True)
class ParsedSecret:
    kind: CredentialKind
    credential_id: str


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode("ascii"))
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, remainder = divmod(value, 62)
        digits.append(_ALPHABET[remainder])
    return "".join(reversed(digits))


def new_credential_id() -> str:
    return _random_base62(ID_LENGTH)


def is_credential_id(value: str) -> bool:
    return _ID_PATTERN.fullmatch(value) is not None


def mint(kind: CredentialKind, credential_id: str) -> str:
    """A fresh secret for the credential `credential_id` of `kind`."""
    body = f"{PREFIXES[kind]}_{credential_id}_{_random_base62(SECRET_LENGTH)}"
    return body + _checksum(body)


def parse(token: str) -> ParsedSecret | None:
    """The kind and credential id named by `token`, or None when it is not a well-formed Watchword
    secret (wrong length, prefix, alphabet or checksum). Costs no store query."""
    if len(token) != TOKEN_LENGTH:
        return None
    match = _PATTERN.fullmatch(token)
    if match is None:
        return None
    kind = _KIND_BY_PREFIX.get(match.group(1))
    if kind is None:
        return None
    body, checksum = token[:-CHECKSUM_LENGTH], token[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(_checksum(body), checksum):
        return None
    return ParsedSecret(kind=kind, credential_id=match.group(2))


def hash_secret(token: str) -> str:
    """What the store keeps instead of the secret. The secrets carry ~190 random bits, so a fast hash
    is safe here (as for GitHub tokens); a slow password hash would only cost latency."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def secret_matches(token: str, stored_hash: str | None) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    if not stored_hash:
        return False
    return hmac.compare_digest(hash_secret(token), stored_hash)


def hint(token: str) -> str:
    """The non-secret beginning of a secret (prefix and id), to recognise it in a list."""
    return token[: 4 + 1 + ID_LENGTH]
