"""Signing JWTs and making signing keys: the one place Watchword produces a JWS (O3/O4 client assertions).

Signatures come from PyJWT's algorithm registry (`jwt.algorithms`), so no signature code is written here.
`jwt.encode` itself is not used because it warns about HMAC keys under 32 bytes: a client_secret_jwt key
is the secret the customer's token server chose, and a warning per delivery would only be noise.
Verification lives beside this in `jws` and `jwk`, hardened for tokens Watchword accepts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

SIGNING_ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
_REGISTRY = {name: get_default_algorithms()[name] for name in SIGNING_ALGORITHMS}
RSA_KEY_BITS = 3072

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _compact_json(value: Mapping[str, object], *, sort_keys: bool = False) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")


def sign_jwt(
    claims: Mapping[str, object],
    key: PrivateKey | str | bytes,
    algorithm: str,
    headers: Mapping[str, str] | None = None,
) -> str:
    """A compact JWS of `claims` signed with `key`: the header holds `alg`, `typ: JWT` and `headers`.
    A str key is an HMAC secret (its UTF-8 bytes); raises ValueError for an algorithm not offered."""
    signer = _REGISTRY.get(algorithm)
    if signer is None:
        raise ValueError(f"cannot sign with {algorithm!r}; use one of {list(SIGNING_ALGORITHMS)}")
    header = {"alg": algorithm, "typ": "JWT", **(headers or {})}
    signing_input = _b64url(_compact_json(header, sort_keys=True)) + b"." + _b64url(_compact_json(claims))
    signature = signer.sign(signing_input, _prepared(key, algorithm, signer))
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


def _prepared(key: PrivateKey | str | bytes, algorithm: str, signer: Any) -> Any:
    if algorithm != "HS256":
        return signer.prepare_key(key)
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes):
        raise ValueError("HS256 signs with a secret (str or bytes)")
    # Used as is: PyJWT's prepare_key refuses secrets that look like PEM or SSH keys, but any secret the
    # customer's server chose must sign.
    return key


def generate_key(algorithm: str) -> tuple[PrivateKey, dict[str, Any]]:
    """A new private key for `algorithm` (ES256 P-256, RS256 3072 bits, EdDSA Ed25519) and its public JWK
    (without `kid`, `alg` or `use`, which the caller decides)."""
    if algorithm == "ES256":
        private: PrivateKey = ec.generate_private_key(ec.SECP256R1())
        return private, ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    if algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        return private, OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        return private, RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    raise ValueError(f"cannot generate a key for {algorithm!r}; use ES256, RS256 or EdDSA")
