"""Watchword's own asymmetric signing keys (I5): generation, `kid` thumbprints, sealing at rest."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization

from watchword.crypto.master_key import MasterKey
from watchword.jose.sign import generate_key

ALGORITHMS = ("ES256", "EdDSA", "RS256")
DEFAULT_ALGORITHM = "ES256"
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}


@dataclass(frozen=True, slots=True)
class NewSigningKey:
    kid: str
    algorithm: str
    public_jwk: str
    sealed_private_key: bytes


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): a `kid` derived from the key itself."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")


def _generate(algorithm: str) -> tuple[Any, dict[str, Any]]:
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unsupported signing algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}"
        )
    return generate_key(algorithm)


def sealing_purpose(kid: str) -> str:
    return f"watchword.signing_key:{kid}"


def generate(algorithm: str, master_key: MasterKey) -> NewSigningKey:
    private, jwk = _generate(algorithm)
    kid = thumbprint(jwk)
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return NewSigningKey(
        kid=kid,
        algorithm=algorithm,
        public_jwk=json.dumps(jwk, sort_keys=True),
        sealed_private_key=master_key.seal(pem, sealing_purpose(kid)),
    )
