"""Hardened JWS/JWT verification for every token Watchword accepts (C1, C4, C7, C8, C9).

Keys are parsed and checked once (`jwk`); each token costs a split, strict base64url, two `json` decodes and
one signature check (`jws`); registered claims are checked last (`claims`).
"""

from watchword.jose.claims import MAX_LEEWAY_SECONDS, ClaimsError, validate
from watchword.jose.jwk import (
    SUPPORTED_ALGORITHMS,
    KeySetError,
    VerificationKey,
    hmac_key,
    load_jwk,
    load_jwks,
    public_key,
)
from watchword.jose.jws import (
    MAX_HEADER_BYTES,
    MAX_TOKEN_BYTES,
    JwsError,
    ParsedJws,
    allowed,
    parse,
    select_key,
    verify,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_LEEWAY_SECONDS",
    "MAX_TOKEN_BYTES",
    "SUPPORTED_ALGORITHMS",
    "ClaimsError",
    "JwsError",
    "KeySetError",
    "ParsedJws",
    "VerificationKey",
    "allowed",
    "hmac_key",
    "load_jwk",
    "load_jwks",
    "parse",
    "public_key",
    "select_key",
    "validate",
    "verify",
]
