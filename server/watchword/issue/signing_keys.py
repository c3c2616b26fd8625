"""Watchword's own asymmetric signing keys (I5): generation, `kid` thumbprints, sealing at rest."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from watchword.crypto.master_key import MasterKey
from watchword.jose.sign import generate_key

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


@dataclass(frozen=True, slots=True)
class _Algorithm:
    """How a stored key of one signing algorithm is recognised and written as a JWK (PyJWT's registry, by
    name); new keys come from `jose.sign.generate_key`."""

    key_type: type[Any]
    to_jwk: Callable[..., dict[str, Any]]


_ALGORITHMS: dict[str, _Algorithm] = {
    "ES256": _Algorithm(ec.EllipticCurvePrivateKey, ECAlgorithm.to_jwk),
    "EdDSA": _Algorithm(ed25519.Ed25519PrivateKey, OKPAlgorithm.to_jwk),
    "RS256": _Algorithm(rsa.RSAPrivateKey, RSAAlgorithm.to_jwk),
}
ALGORITHMS = tuple(_ALGORITHMS)


def fits(algorithm: str, private: Any) -> bool:
    """Whether `private` is a key of `algorithm` (for ES256, on P-256)."""
    entry = _ALGORITHMS.get(algorithm)
    if entry is None or not isinstance(private, entry.key_type):
        return False
    return not isinstance(private, ec.EllipticCurvePrivateKey) or isinstance(private.curve, ec.SECP256R1)


def public_jwk_of(algorithm: str, private: Any) -> dict[str, Any]:
    """The public half of a private key of `algorithm`, as a JWK (no kid, alg or use)."""
    return _ALGORITHMS[algorithm].to_jwk(private.public_key(), as_dict=True)


def sealing_purpose(kid: str) -> str:
    return f"watchword.signing_key:{kid}"


def generate(algorithm: str, master_key: MasterKey) -> NewSigningKey:
    if algorithm not in _ALGORITHMS:
        choices = ", ".join(ALGORITHMS)
        raise ValueError(f"unsupported signing algorithm {algorithm!r}; choose one of {choices}")
    private, jwk = generate_key(algorithm)
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
