"""Compact JWS parsing and verification, hardened along RFC 8725.

Per token: split, strict base64url, `json` of header and payload, one signature check with a key that was
prepared when it was loaded (see `jwk`). Only configured keys verify: `jku`, `x5u`, `jwk` and `x5c` headers
are never fetched nor trusted, `kid` is only ever a dictionary key, and a key verifies only the one algorithm
it was loaded for, which rules out HS/RS and HS/ES confusion. Error messages never echo the token.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from watchword import reasons
from watchword.jose.jwk import SUPPORTED_ALGORITHMS, VerificationKey, decode_b64url

MAX_TOKEN_BYTES = 8192
MAX_HEADER_BYTES = 1024
# Encoded length of a MAX_HEADER_BYTES header: refuse bigger ones before decoding anything.
_MAX_HEADER_B64 = (MAX_HEADER_BYTES * 4 + 2) // 3


class JwsError(ValueError):
    """A refused token; `reason` is one of the token_* codes in `watchword.reasons`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParsedJws:
    header: dict[str, object]
    claims: dict[str, object]
    # The token is a bearer credential: keep its parts out of reprs and logs.
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    payload: bytes = field(default=b"", repr=False)

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None  # parse() refuses a non-string kid

    @property
    def algorithm(self) -> str:
        alg = self.header.get("alg")
        return alg if isinstance(alg, str) else ""  # parse() refuses a missing or non-string alg


def _malformed(message: str) -> JwsError:
    return JwsError(reasons.TOKEN_MALFORMED, message)


# Headers already parsed and checked, by their encoded form: an issuer's tokens share a handful of headers
# (alg, kid, typ), so most tokens cost one dictionary lookup here. Never changed once stored (nothing
# writes to a parsed header).
MAX_CACHED_HEADERS = 1024
_HEADERS: dict[str, dict[str, object]] = {}

# --- parsing ------------------------------------------------------------------------------------------


def parse(token: str, *, max_bytes: int = MAX_TOKEN_BYTES, json_payload: bool = True) -> ParsedJws:
    """Parse a compact JWS whose payload is a JSON object (a JWT), or any payload with json_payload=False.

    Raises JwsError. The signature is NOT checked here: call `allowed` and `verify`.
    """
    if not isinstance(token, str) or not token.isascii():
        raise _malformed("the token is not an ASCII string")
    if len(token) > max_bytes:
        raise _malformed(f"the token is longer than {max_bytes} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed("a compact JWS has exactly three dot-separated parts")
    header_b64, payload_b64, signature_b64 = parts
    if len(header_b64) > _MAX_HEADER_B64:
        raise _malformed(f"the header is longer than {MAX_HEADER_BYTES} bytes")
    header = _HEADERS.get(header_b64)
    if header is None:
        header = _json_object(_decode(header_b64, "header"), "header")
        _check_header(header)
        if len(_HEADERS) >= MAX_CACHED_HEADERS:
            _HEADERS.clear()  # bounded, whatever the tokens sent; a flood only costs the uncached parse
        _HEADERS[header_b64] = header
    if json_payload and "cty" in header:
        # A JWT's payload is its claims: a content type means a nested JWT or something else to be
        # processed another way, which would be a second verification path (RFC 8725 §3.11, 7519 §5.2).
        raise JwsError(reasons.TOKEN_HEADER_UNSUPPORTED, "a JWT header must not carry 'cty'")
    payload = _decode(payload_b64, "payload")
    claims = _json_object(payload, "payload") if json_payload else {}
    signature = _decode(signature_b64, "signature")
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
    return ParsedJws(header, claims, signing_input, signature, payload)


def _decode(segment: str, what: str) -> bytes:
    try:
        return decode_b64url(segment)
    except ValueError:
        raise _malformed(f"the {what} is not canonical unpadded base64url") from None


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate names are read differently by different parsers (RFC 7515 §5.2, RFC 8259 §4).
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member name")
    return members


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # 1e999 would otherwise become infinity: an `exp` that never passes.
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


_JSON_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_members, parse_constant=_no_constant, parse_float=_finite_float
)


def _json_object(raw: bytes, what: str) -> dict[str, object]:
    try:
        text = raw.decode("utf-8").strip(_JSON_WHITESPACE)  # strictly UTF-8: not UTF-16/32 as json may
        value, end = _DECODER.raw_decode(text)  # raw_decode skips decode()'s two regex passes
        if end != len(text):
            raise ValueError("data after the JSON value")
        if "\\u" in text:
            _refuse_lone_surrogates(value)
    except (ValueError, RecursionError):  # also UnicodeDecodeError and over-long integers
        raise _malformed(f"the {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise _malformed(f"the {what} is not a JSON object")
    return value


def _refuse_lone_surrogates(value: object) -> None:
    """An escaped lone surrogate (\\ud800) decodes to a str no UTF-8 encoder accepts, far from here."""
    if isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError is a ValueError
    elif isinstance(value, dict):
        for name, member in value.items():
            name.encode("utf-8")
            _refuse_lone_surrogates(member)
    elif isinstance(value, list):
        for item in value:
            _refuse_lone_surrogates(item)


def _check_header(header: dict[str, object]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _malformed("the header has no string 'alg'")
    if alg.lower() == "none":
        raise JwsError(reasons.TOKEN_ALGORITHM_NOT_ALLOWED, "unsecured tokens (alg none) are never accepted")
    if alg not in SUPPORTED_ALGORITHMS:
        raise JwsError(reasons.TOKEN_ALGORITHM_NOT_ALLOWED, "the token's alg is not supported")
    if "kid" in header and not isinstance(header["kid"], str):
        raise _malformed("the header's 'kid' is not a string")
    # We implement no JWS extension, so any `crit` names one we do not understand (RFC 7515 §4.1.11).
    if "crit" in header:
        raise JwsError(reasons.TOKEN_HEADER_UNSUPPORTED, "the header has 'crit' extensions")
    # Unencoded payloads (RFC 7797) are not supported, whether or not `crit` announces them.
    if "b64" in header and header["b64"] is not True:
        raise JwsError(reasons.TOKEN_HEADER_UNSUPPORTED, "unencoded payloads (b64) are not supported")


# --- key choice and algorithm policy ------------------------------------------------------------------


def allowed(parsed: ParsedJws, algorithms: Collection[str]) -> None:
    """Refuse a token whose `alg` is not in this issuer's allow-list."""
    if parsed.algorithm not in algorithms:
        raise JwsError(reasons.TOKEN_ALGORITHM_NOT_ALLOWED, "the token's alg is not allowed here")


def select_key(parsed: ParsedJws, keys: Mapping[str | None, VerificationKey]) -> VerificationKey:
    """The key named by the token's `kid`: a plain dictionary lookup, never a path or a query."""
    key = keys.get(parsed.kid)
    if key is None:
        raise JwsError(reasons.TOKEN_KEY_UNKNOWN, "no known key has the token's kid")
    return key


# --- verification -------------------------------------------------------------------------------------


def verify(parsed: ParsedJws, key: VerificationKey) -> None:
    """Check the signature with `key`, which verifies exactly its one algorithm. Raises JwsError."""
    if parsed.algorithm != key.algorithm:
        raise JwsError(reasons.TOKEN_ALGORITHM_NOT_ALLOWED, "the token's alg is not the key's algorithm")
    if not _VERIFIERS[key.algorithm](key.key, parsed.signing_input, parsed.signature):
        raise JwsError(reasons.TOKEN_SIGNATURE_INVALID, "the signature does not verify")


Verifier = Callable[[Any, bytes, bytes], bool]


def _hmac_verifier(digest: str) -> Verifier:
    def check(key: Any, data: bytes, signature: bytes) -> bool:
        # VerificationKey guarantees bytes here; re-checked because this is where confusion would bite.
        if type(key) is not bytes:
            return False
        return hmac.compare_digest(hmac.digest(key, data, digest), signature)

    return check


def _rsa_verifier(pad: padding.AsymmetricPadding, hash_algorithm: hashes.HashAlgorithm) -> Verifier:
    def check(key: Any, data: bytes, signature: bytes) -> bool:
        # Exactly the modulus length: no leading zeros added or dropped (RFC 8017 §8.2.2 step 1).
        if len(signature) != (key.key_size + 7) // 8:
            return False
        try:
            key.verify(signature, data, pad, hash_algorithm)
        except InvalidSignature:
            return False
        return True

    return check


def _pss(hash_algorithm: hashes.HashAlgorithm) -> padding.PSS:
    # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
    return padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)


def _ecdsa_verifier(hash_algorithm: hashes.HashAlgorithm, size: int, order: int) -> Verifier:
    algorithm = ec.ECDSA(hash_algorithm)

    def check(key: Any, data: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: R || S, each exactly the coordinate size. Zero or out-of-range values are refused
        # before the library sees them (CVE-2022-21449 "psychic signatures" accepted r = s = 0).
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        if not (0 < r < order and 0 < s < order):
            return False
        try:
            key.verify(encode_dss_signature(r, s), data, algorithm)
        except InvalidSignature:
            return False
        return True

    return check


def _eddsa_check(key: Any, data: bytes, signature: bytes) -> bool:
    if len(signature) != 64:
        return False
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # curve orders (SEC 2)
_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16
)
_P521_ORDER = int(
    "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa"
    "51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
    16,
)

_VERIFIERS: dict[str, Verifier] = {
    "HS256": _hmac_verifier("sha256"),
    "HS384": _hmac_verifier("sha384"),
    "HS512": _hmac_verifier("sha512"),
    "RS256": _rsa_verifier(padding.PKCS1v15(), hashes.SHA256()),
    "RS384": _rsa_verifier(padding.PKCS1v15(), hashes.SHA384()),
    "RS512": _rsa_verifier(padding.PKCS1v15(), hashes.SHA512()),
    "PS256": _rsa_verifier(_pss(hashes.SHA256()), hashes.SHA256()),
    "PS384": _rsa_verifier(_pss(hashes.SHA384()), hashes.SHA384()),
    "PS512": _rsa_verifier(_pss(hashes.SHA512()), hashes.SHA512()),
    "ES256": _ecdsa_verifier(hashes.SHA256(), 32, _P256_ORDER),
    "ES384": _ecdsa_verifier(hashes.SHA384(), 48, _P384_ORDER),
    "ES512": _ecdsa_verifier(hashes.SHA512(), 66, _P521_ORDER),
    "EdDSA": _eddsa_check,
}
