"""The operator's master key and authenticated encryption of secrets at rest (AES-256-GCM).

Each sealed value is bound to its purpose (associated data), so a ciphertext copied from one row to
another in the database does not decrypt there.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_VERSION = b"\x01"
_NONCE_BYTES = 12


class MasterKeyError(Exception):
    """The master key is missing, malformed, or does not open a sealed value."""


def generate() -> str:
    """A new master key, base64url without padding (what the key file and WATCHWORD_MASTER_KEY hold)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode("ascii")


def _decode(text: str, origin: str) -> bytes:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise MasterKeyError(f"the master key in {origin} is not base64url") from None
    if len(raw) != KEY_BYTES:
        raise MasterKeyError(
            f"the master key in {origin} must be {KEY_BYTES} bytes (base64url); "
            "`watchword generate-master-key` makes one"
        )
    return raw


@dataclass(frozen=True, slots=True)
class MasterKey:
    _aead: AESGCM

    @classmethod
    def from_text(cls, text: str, origin: str) -> MasterKey:
        return cls(AESGCM(_decode(text, origin)))

    @classmethod
    def from_file(cls, path: Path) -> MasterKey:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise MasterKeyError(f"cannot read the master key file {str(path)!r}: {exc}") from None
        return cls.from_text(text, repr(str(path)))

    @classmethod
    def create_file(cls, path: Path) -> MasterKey:
        """Development mode: write a new key readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(generate() + "\n")
        return cls.from_file(path)

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, purpose.encode("utf-8"))

    def open(self, sealed: bytes, purpose: str) -> bytes:
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            raise MasterKeyError("sealed value is malformed")
        nonce, ciphertext = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, purpose.encode("utf-8"))
        except InvalidTag:
            raise MasterKeyError("sealed value does not open with this master key") from None
