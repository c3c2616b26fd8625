"""Hardened JWS verification (issue 3, RFC 8725): each attack is its own test with a crafted token.

Tokens are signed with PyJWT (or by hand where PyJWT would refuse to build the attack); parsing and
verification are Watchword's own `watchword.jose`.
"""

from __future__ import annotations

import base64
import builtins
import functools
import hashlib
import hmac
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from watchword import reasons
from watchword.jose import (
    MAX_HEADER_BYTES,
    MAX_LEEWAY_SECONDS,
    MAX_TOKEN_BYTES,
    ClaimsError,
    JwsError,
    VerificationKey,
    allowed,
    hmac_key,
    parse,
    public_key,
    select_key,
    validate,
    verify,
)
from watchword.jose.claims import MAX_TIME

CLAIMS = {"sub": "user-1", "iss": "https://idp.example", "aud": "watchword", "exp": 2_000_000_000}
ORDERS = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
    ),
    "ES512": int(
        "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa"
        "51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
        16,
    ),
}
SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}


@dataclass(frozen=True)
class Signer:
    algorithm: str
    private: Any  # what PyJWT signs with
    key: VerificationKey  # what Watchword verifies with


@functools.cache
def signers() -> dict[str, Signer]:
    """One key per algorithm, made once per run (RSA generation is slow)."""
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
    made: dict[str, Signer] = {}
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        made[alg] = Signer(alg, rsa_private, public_key(rsa_private.public_key(), kid=alg, algorithm=alg))
    for alg, curve in curves.items():
        private = ec.generate_private_key(curve)
        made[alg] = Signer(alg, private, public_key(private.public_key(), kid=alg, algorithm=alg))
    ed_private = ed25519.Ed25519PrivateKey.generate()
    made["EdDSA"] = Signer(
        "EdDSA", ed_private, public_key(ed_private.public_key(), kid="EdDSA", algorithm="EdDSA")
    )
    for alg, size in (("HS256", 32), ("HS384", 48), ("HS512", 64)):
        secret = hashlib.sha512(alg.encode()).digest()[:size]
        made[alg] = Signer(alg, secret, hmac_key(secret, kid=alg, algorithm=alg))
    return made


ALGORITHMS = sorted(signers())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encoded(part: dict[str, Any] | bytes | str) -> bytes:
    if isinstance(part, bytes):
        return part
    return (part if isinstance(part, str) else json.dumps(part, separators=(",", ":"))).encode()


def token_for(alg: str, claims: dict[str, Any] | None = None, **headers: Any) -> str:
    signer = signers()[alg]
    return jwt.encode(claims or CLAIMS, signer.private, algorithm=alg, headers={"kid": alg, **headers})


def signed(alg: str, header: dict[str, Any] | bytes | str, payload: dict[str, Any] | bytes | str) -> str:
    """A token with exactly this header and payload, correctly signed with `alg`'s key (via PyJWT)."""
    signing_input = f"{b64(encoded(header))}.{b64(encoded(payload))}"
    algorithm = jwt.get_algorithm_by_name(alg)
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(signers()[alg].private))
    return f"{signing_input}.{b64(signature)}"


def with_signature(token: str, signature: bytes) -> str:
    return f"{token.rsplit('.', 1)[0]}.{b64(signature)}"


def check(token: str, alg: str, **parse_options: Any) -> None:
    verify(parse(token, **parse_options), signers()[alg].key)


def refusal(token: str, alg: str = "HS256", **parse_options: Any) -> str:
    with pytest.raises(JwsError) as caught:
        check(token, alg, **parse_options)
    return caught.value.reason


# --- valid tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_c1_c4_c8_valid_token_verifies(alg: str) -> None:
    parsed = parse(token_for(alg))
    allowed(parsed, frozenset({alg}))
    verify(parsed, signers()[alg].key)
    assert (parsed.claims, parsed.kid, parsed.algorithm) == (CLAIMS, alg, alg)


def test_c4_tenant_token_is_verified_with_the_key_its_kid_names() -> None:
    keys = {"secret-a": hmac_key(b"a" * 32, kid="secret-a"), "secret-b": hmac_key(b"b" * 32, kid="secret-b")}
    token = jwt.encode(CLAIMS, b"b" * 32, algorithm="HS256", headers={"kid": "secret-b"})
    parsed = parse(token)
    verify(parsed, select_key(parsed, keys))


def test_c9_client_assertion_with_hs256_verifies() -> None:
    assertion = {"iss": "client-1", "sub": "client-1", "aud": "https://watchword/token", "exp": 2_000_000_000}
    parsed = parse(token_for("HS256", assertion, typ="JWT"))
    verify(parsed, signers()["HS256"].key)
    validate(
        parsed.claims, now=1_900_000_000, leeway=0, issuer="client-1", audience="https://watchword/token"
    )


def test_c1_parsed_token_repr_does_not_leak_the_credential() -> None:
    token = token_for("HS256")
    assert token.rsplit(".", 1)[1] not in repr(parse(token))


# --- algorithms: none, allow-list, one key one algorithm ------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_c1_alg_none_is_refused(alg: str) -> None:
    unsigned = f"{b64(encoded({'alg': alg, 'kid': 'HS256'}))}.{b64(encoded(CLAIMS))}."
    assert refusal(unsigned) == reasons.TOKEN_ALGORITHM_NOT_ALLOWED
    # Even with a signature appended, and even if the key were willing.
    assert refusal(unsigned + b64(b"x" * 32)) == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize("alg", ["HS1", "ES256K", "RSA-OAEP", "", "hs256"])
def test_c1_unsupported_alg_is_refused(alg: str) -> None:
    assert (
        refusal(signed("HS256", {"alg": alg, "kid": "HS256"}, CLAIMS)) == reasons.TOKEN_ALGORITHM_NOT_ALLOWED
    )


def test_c1_alg_outside_the_issuer_allow_list_is_refused() -> None:
    parsed = parse(token_for("ES256"))
    with pytest.raises(JwsError) as caught:
        allowed(parsed, frozenset({"RS256", "PS256"}))
    assert caught.value.reason == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


def _public_key_encodings(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> list[bytes]:
    formats = [
        (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    ]
    if isinstance(key, rsa.RSAPublicKey):
        formats.append((serialization.Encoding.PEM, serialization.PublicFormat.PKCS1))
    else:
        formats.append((serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    return [key.public_bytes(encoding, public_format) for encoding, public_format in formats]


def _hs256_signed_with(secret: bytes, kid: str) -> str:
    # PyJWT refuses to use a PEM as an HMAC secret, so the attacker signs by hand.
    signing_input = f"{b64(encoded({'alg': 'HS256', 'kid': kid}))}.{b64(encoded(CLAIMS))}"
    return f"{signing_input}.{b64(hmac.digest(secret, signing_input.encode(), 'sha256'))}"


def test_c4_hs256_with_rsa_public_key_bytes_is_refused() -> None:
    """The classic confusion: HMAC keyed with the (public) RSA key, hoping the verifier does the same."""
    key = signers()["RS256"].key
    for secret in _public_key_encodings(key.key):  # type: ignore[arg-type]
        assert refusal(_hs256_signed_with(secret, "RS256"), "RS256") == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


def test_c1_hs256_with_ec_public_key_bytes_is_refused() -> None:
    key = signers()["ES256"].key
    for secret in _public_key_encodings(key.key):  # type: ignore[arg-type]
        assert refusal(_hs256_signed_with(secret, "ES256"), "ES256") == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


def test_c4_token_for_another_algorithm_than_the_secret_was_created_for_is_refused() -> None:
    secret = b"k" * 64
    token = jwt.encode(CLAIMS, secret, algorithm="HS512", headers={"kid": "t"})
    with pytest.raises(JwsError) as caught:
        verify(parse(token), hmac_key(secret, kid="t", algorithm="HS256"))
    assert caught.value.reason == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


def test_c1_rs256_token_against_a_ps256_key_is_refused() -> None:
    ps_key = signers()["PS256"].key
    with pytest.raises(JwsError) as caught:
        verify(parse(token_for("RS256")), ps_key)
    assert caught.value.reason == reasons.TOKEN_ALGORITHM_NOT_ALLOWED


# --- RSA signature shape --------------------------------------------------------------------------------


def test_c1_ps256_with_another_salt_length_is_refused() -> None:
    token = token_for("PS256")
    signing_input = token.rsplit(".", 1)[0].encode()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    other_salt = signers()["PS256"].private.sign(signing_input, pss, hashes.SHA256())
    assert refusal(with_signature(token, other_salt), "PS256") == reasons.TOKEN_SIGNATURE_INVALID


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_c1_rsa_signature_with_an_extra_leading_zero_is_refused(alg: str) -> None:
    token = token_for(alg)
    signature = parse(token).signature
    assert refusal(with_signature(token, b"\0" + signature), alg) == reasons.TOKEN_SIGNATURE_INVALID
    assert refusal(with_signature(token, signature[1:]), alg) == reasons.TOKEN_SIGNATURE_INVALID


# --- ECDSA: CVE-2022-21449 class and signature shape -----------------------------------------------------


def _rs(alg: str, r: int, s: int) -> bytes:
    return r.to_bytes(SIZES[alg], "big") + s.to_bytes(SIZES[alg], "big")


def _valid_rs(alg: str) -> tuple[str, int, int]:
    token = token_for(alg)
    raw = parse(token).signature
    size = SIZES[alg]
    return token, int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_ecdsa_zero_signature_refused(alg: str) -> None:
    token = token_for(alg)
    assert refusal(with_signature(token, _rs(alg, 0, 0)), alg) == reasons.TOKEN_SIGNATURE_INVALID


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_c1_ecdsa_r_equal_to_n_refused(alg: str) -> None:
    token, _, s = _valid_rs(alg)
    assert refusal(with_signature(token, _rs(alg, ORDERS[alg], s)), alg) == reasons.TOKEN_SIGNATURE_INVALID


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_c1_ecdsa_s_equal_to_n_refused(alg: str) -> None:
    token, r, _ = _valid_rs(alg)
    assert refusal(with_signature(token, _rs(alg, r, ORDERS[alg])), alg) == reasons.TOKEN_SIGNATURE_INVALID


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_c1_ecdsa_r_or_s_zero_with_the_other_valid_refused(alg: str) -> None:
    token, r, s = _valid_rs(alg)
    assert refusal(with_signature(token, _rs(alg, 0, s)), alg) == reasons.TOKEN_SIGNATURE_INVALID
    assert refusal(with_signature(token, _rs(alg, r, 0)), alg) == reasons.TOKEN_SIGNATURE_INVALID


def test_c1_ecdsa_test_orders_are_the_curve_orders() -> None:
    """(r, n - s) is valid whenever (r, s) is (ECDSA malleability): true only for the right n."""
    for alg in ("ES256", "ES384", "ES512"):
        token, r, s = _valid_rs(alg)
        check(with_signature(token, _rs(alg, r, ORDERS[alg] - s)), alg)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_c1_ecdsa_range_is_checked_before_the_library_sees_the_signature(
    monkeypatch: pytest.MonkeyPatch, alg: str
) -> None:
    from watchword.jose import jws

    seen: list[tuple[int, int]] = []

    def spy(r: int, s: int) -> bytes:
        seen.append((r, s))
        return encode_dss_signature(r, s)

    monkeypatch.setattr(jws, "encode_dss_signature", spy)
    token, n = token_for(alg), ORDERS[alg]
    for r, s in ((0, 0), (0, 1), (1, 0), (n, 1), (1, n), (n, n), (n + 1, 1)):
        assert refusal(with_signature(token, _rs(alg, r, s)), alg) == reasons.TOKEN_SIGNATURE_INVALID
    assert seen == []
    assert refusal(with_signature(token, _rs(alg, n - 1, n - 1)), alg) == reasons.TOKEN_SIGNATURE_INVALID
    assert seen == [(n - 1, n - 1)]  # the largest in-range values do reach the library


def test_c1_ecdsa_r_and_s_plus_n_refused() -> None:
    """r + n and s + n are the same values modulo n: a verifier that reduces them would accept."""
    token, r, s = _valid_rs("ES512")  # P-521's 66-byte fields leave room above n
    forged = _rs("ES512", r + ORDERS["ES512"], s + ORDERS["ES512"])
    assert refusal(with_signature(token, forged), "ES512") == reasons.TOKEN_SIGNATURE_INVALID


def test_c1_ecdsa_signature_of_wrong_length_refused() -> None:
    token, r, s = _valid_rs("ES256")
    raw = _rs("ES256", r, s)
    for wrong in (raw[:-1], raw + b"\0", b"\0" + raw, raw[:32]):
        assert refusal(with_signature(token, wrong), "ES256") == reasons.TOKEN_SIGNATURE_INVALID


def test_c1_ecdsa_der_signature_refused() -> None:
    """JWS carries R || S; a DER signature (what the library wants) must not be passed through."""
    token, r, s = _valid_rs("ES256")
    der = encode_dss_signature(r, s)
    assert decode_dss_signature(der) == (r, s)
    assert refusal(with_signature(token, der), "ES256") == reasons.TOKEN_SIGNATURE_INVALID


# --- headers: crit, b64, jku/x5u/jwk/x5c, kid -----------------------------------------------------------


@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "exp", None])
def test_c1_unknown_crit_refused(crit: Any) -> None:
    token = signed("HS256", {"alg": "HS256", "kid": "HS256", "crit": crit, "exp": 1}, CLAIMS)
    assert refusal(token) == reasons.TOKEN_HEADER_UNSUPPORTED


@pytest.mark.parametrize("cty", ["JWT", "jwt", "application/json", "", None, {"nested": True}])
def test_c1_c4_c8_cty_header_is_refused_on_a_jwt(cty: Any) -> None:
    """RFC 8725 §3.11: a JWT's payload is its claims; a content type means nested or other content."""
    token = signed("HS256", {"alg": "HS256", "kid": "HS256", "cty": cty}, CLAIMS)
    assert refusal(token) == reasons.TOKEN_HEADER_UNSUPPORTED
    # Cached headers are checked too: the second parse of the same header refuses it again.
    assert refusal(token) == reasons.TOKEN_HEADER_UNSUPPORTED
    check(token_for("HS256"), "HS256")  # the same header without cty verifies


@pytest.mark.parametrize("b64_value", [False, 0, "false"])
def test_c1_unencoded_payload_b64_false_refused(b64_value: Any) -> None:
    token = signed("HS256", {"alg": "HS256", "kid": "HS256", "b64": b64_value}, CLAIMS)
    assert refusal(token) == reasons.TOKEN_HEADER_UNSUPPORTED


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("verification tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _attacker_headers(attacker: ec.EllipticCurvePrivateKey) -> list[dict[str, Any]]:
    attacker_jwk = {**ECAlgorithm.to_jwk(attacker.public_key(), as_dict=True), "kid": "ES256"}
    certificate = base64.b64encode(b"attacker certificate").decode()
    return [
        {"jwk": attacker_jwk},
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"x5c": [certificate]},
        {"jwk": attacker_jwk, "jku": "https://attacker.example/jwks.json", "x5c": [certificate]},
    ]


@pytest.mark.usefixtures("no_network")
def test_c1_jku_x5u_jwk_x5c_headers_are_ignored() -> None:
    """A token signed by the attacker's key, naming that key in its header, is checked with ours only."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    for extra in _attacker_headers(attacker):
        token = jwt.encode(CLAIMS, attacker, algorithm="ES256", headers={"kid": "ES256", **extra})
        assert refusal(token, "ES256") == reasons.TOKEN_SIGNATURE_INVALID


@pytest.mark.usefixtures("no_network")
def test_c1_jku_header_on_a_genuine_token_changes_nothing() -> None:
    check(token_for("ES256", jku="https://attacker.example/jwks.json"), "ES256")


@pytest.mark.parametrize(
    "kid",
    ["../../../../dev/null", "/etc/passwd", "' OR '1'='1", "https://attacker.example/key", "", "HS256\0"],
)
def test_c1_kid_with_path_traversal_is_just_an_unknown_kid(monkeypatch: pytest.MonkeyPatch, kid: str) -> None:
    def no_files(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("kid was used to open a file")

    monkeypatch.setattr(builtins, "open", no_files)
    parsed = parse(signed("HS256", {"alg": "HS256", "kid": kid}, CLAIMS))
    assert parsed.kid == kid
    with pytest.raises(JwsError) as caught:
        select_key(parsed, {"HS256": signers()["HS256"].key})
    assert caught.value.reason == reasons.TOKEN_KEY_UNKNOWN


@pytest.mark.parametrize("kid", [123, None, {"$ne": ""}, ["HS256"], True])
def test_c1_non_string_kid_is_malformed(kid: Any) -> None:
    assert refusal(signed("HS256", {"alg": "HS256", "kid": kid}, CLAIMS)) == reasons.TOKEN_MALFORMED


def test_c4_token_without_kid_finds_no_tenant_key() -> None:
    parsed = parse(signed("HS256", {"alg": "HS256"}, CLAIMS))
    with pytest.raises(JwsError) as caught:
        select_key(parsed, {"HS256": signers()["HS256"].key})
    assert caught.value.reason == reasons.TOKEN_KEY_UNKNOWN


def test_c4_token_of_one_tenant_is_never_accepted_for_another() -> None:
    tenant_a = {"secret-a": hmac_key(b"a" * 32, kid="secret-a")}
    tenant_b = {"secret-b": hmac_key(b"b" * 32, kid="secret-b")}
    token_b = jwt.encode(CLAIMS, b"b" * 32, algorithm="HS256", headers={"kid": "secret-b"})
    with pytest.raises(JwsError) as unknown:
        select_key(parse(token_b), tenant_a)
    assert unknown.value.reason == reasons.TOKEN_KEY_UNKNOWN
    # B signing with its own secret but naming A's kid.
    spoofed = parse(jwt.encode(CLAIMS, b"b" * 32, algorithm="HS256", headers={"kid": "secret-a"}))
    with pytest.raises(JwsError) as invalid:
        verify(spoofed, select_key(spoofed, tenant_a))
    assert invalid.value.reason == reasons.TOKEN_SIGNATURE_INVALID
    verify(parse(token_b), select_key(parse(token_b), tenant_b))


# --- JSON -----------------------------------------------------------------------------------------------


def test_c1_duplicate_header_member_is_malformed() -> None:
    header = '{"alg":"HS256","kid":"HS256","kid":"other"}'
    assert refusal(signed("HS256", header, CLAIMS)) == reasons.TOKEN_MALFORMED


def test_c1_duplicate_alg_member_is_malformed() -> None:
    header = '{"alg":"HS256","kid":"HS256","alg":"none"}'
    assert refusal(signed("HS256", header, CLAIMS)) == reasons.TOKEN_MALFORMED


def test_c1_duplicate_claim_is_malformed() -> None:
    payload = '{"sub":"user-1","exp":2000000000,"sub":"admin"}'
    assert refusal(signed("HS256", {"alg": "HS256"}, payload)) == reasons.TOKEN_MALFORMED


def test_c1_duplicate_member_in_a_nested_object_is_malformed() -> None:
    payload = '{"sub":"u","realm_access":{"roles":["user"],"roles":["admin"]}}'
    assert refusal(signed("HS256", {"alg": "HS256"}, payload)) == reasons.TOKEN_MALFORMED


@pytest.mark.parametrize(
    "header", ['["HS256"]', '"HS256"', "42", "null", "{}", '{"kid":"HS256"}', '{"alg":1}']
)
def test_c1_header_that_is_not_an_object_with_a_string_alg_is_malformed(header: str) -> None:
    assert refusal(signed("HS256", header, CLAIMS)) == reasons.TOKEN_MALFORMED


@pytest.mark.parametrize("payload", ['["sub","user-1"]', '"user-1"', "42", "null", "true", ""])
def test_c1_payload_that_is_not_an_object_is_malformed(payload: str) -> None:
    assert refusal(signed("HS256", {"alg": "HS256"}, payload)) == reasons.TOKEN_MALFORMED


@pytest.mark.parametrize("part", ["header", "payload"])
def test_c1_non_json_is_malformed(part: str) -> None:
    header, payload = ({"alg": "HS256"}, "not json {") if part == "payload" else ("not json {", CLAIMS)
    assert refusal(signed("HS256", header, payload)) == reasons.TOKEN_MALFORMED


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_c1_non_finite_numbers_are_malformed(number: str) -> None:
    payload = '{"sub":"user-1","exp":' + number + "}"
    assert refusal(signed("HS256", {"alg": "HS256"}, payload)) == reasons.TOKEN_MALFORMED


def test_c1_integer_with_thousands_of_digits_is_malformed() -> None:
    payload = '{"exp":' + "9" * 5000 + "}"
    assert refusal(signed("HS256", {"alg": "HS256"}, payload)) == reasons.TOKEN_MALFORMED


def test_c1_deeply_nested_payload_is_malformed() -> None:
    payload = '{"a":' + "[" * 5000 + "]" * 5000 + "}"
    assert refusal(signed("HS256", {"alg": "HS256"}, payload), max_bytes=100_000) == reasons.TOKEN_MALFORMED


def test_c1_lone_surrogate_is_malformed_but_a_pair_is_fine() -> None:
    lone = '{"sub":"\\ud800x","exp":2000000000}'
    assert refusal(signed("HS256", {"alg": "HS256"}, lone)) == reasons.TOKEN_MALFORMED
    pair = '{"sub":"\\ud83d\\ude00","exp":2000000000}'
    token = signed("HS256", {"alg": "HS256"}, pair)
    check(token, "HS256")
    assert parse(token).claims["sub"] == "\N{GRINNING FACE}"


@pytest.mark.parametrize(
    "payload",
    [
        '{"sub":"caf\xe9"}'.encode("latin-1"),
        '{"sub":"user-1"}'.encode("utf-16"),
        b"\xef\xbb\xbf" + b'{"sub":"user-1"}',
    ],
    ids=["latin-1", "utf-16", "utf-8-bom"],
)
def test_c1_payload_that_is_not_plain_utf8_json_is_malformed(payload: bytes) -> None:
    assert refusal(signed("HS256", {"alg": "HS256"}, payload)) == reasons.TOKEN_MALFORMED


def test_c1_whitespace_inside_the_json_is_fine() -> None:
    check(signed("HS256", '{ "alg" : "HS256",\n\t"kid":"HS256" }', ' {"sub": "user-1"} '), "HS256")


# --- base64url ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_c1_base64_padding_is_malformed(segment: int) -> None:
    parts = token_for("HS256").split(".")
    parts[segment] += "=" * (-len(parts[segment]) % 4 or 4)
    assert refusal(".".join(parts)) == reasons.TOKEN_MALFORMED


def test_c1_non_canonical_base64_is_malformed() -> None:
    """A last character with unused bits set decodes, leniently, to the very same signature."""
    token = token_for("HS256")
    body, signature = token.rsplit(".", 1)
    assert len(signature) % 4 == 3  # 32 bytes: the last character carries 2 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = signature[:-1] + alphabet[alphabet.index(signature[-1]) | 1]
    lenient = base64.urlsafe_b64decode(twin + "=")
    assert twin != signature
    assert lenient == base64.urlsafe_b64decode(signature + "=")
    assert refusal(f"{body}.{twin}") == reasons.TOKEN_MALFORMED


def test_c1_non_canonical_base64_payload_is_malformed() -> None:
    # Wycheproof's "AB": decodes to b"\x00" in lenient decoders, whose canonical spelling is "AA".
    assert (
        refusal(signed("HS256", {"alg": "HS256"}, b"\0").replace(".AA.", ".AB.")) == reasons.TOKEN_MALFORMED
    )


@pytest.mark.parametrize("junk", ["+", "/", " ", "\n", "\t", "?", "#", "%2D"])
def test_c1_characters_outside_base64url_are_malformed(junk: str) -> None:
    header, payload, signature = token_for("HS256").split(".")
    for variant in (f"{header}{junk}.{payload}.{signature}", f"{header}.{payload}.{signature[:8]}{junk}"):
        assert refusal(variant) == reasons.TOKEN_MALFORMED


def test_c1_segment_of_impossible_length_is_malformed() -> None:
    header, payload, signature = token_for("HS256").split(".")
    odd = payload + "A" * (1 - len(payload) % 4 + 4)
    assert len(odd) % 4 == 1
    assert refusal(f"{header}.{odd}.{signature}") == reasons.TOKEN_MALFORMED


# --- structure and size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", ".", "..", "...", "a.b", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9"])
def test_c1_token_without_exactly_three_parts_is_malformed(token: str) -> None:
    assert refusal(token) == reasons.TOKEN_MALFORMED


def test_c1_extra_segment_on_a_valid_token_is_malformed() -> None:
    assert refusal(token_for("HS256") + ".") == reasons.TOKEN_MALFORMED


def test_c1_json_serialization_is_not_supported() -> None:
    header, payload, signature = token_for("HS256").split(".")
    flattened = json.dumps({"protected": header, "payload": payload, "signature": signature})
    assert refusal(flattened) == reasons.TOKEN_MALFORMED


def test_c1_detached_payload_is_not_supported() -> None:
    header, _, signature = token_for("HS256").split(".")
    assert refusal(f"{header}..{signature}") == reasons.TOKEN_MALFORMED


@pytest.mark.parametrize("junk", ["é", "\N{FULLWIDTH DIGIT ONE}", "\u200b", "\N{GREEK SMALL LETTER ALPHA}"])
def test_c1_non_ascii_token_is_malformed(junk: str) -> None:
    header, payload, signature = token_for("HS256").split(".")
    assert refusal(f"{header}.{payload}{junk}.{signature}") == reasons.TOKEN_MALFORMED


@pytest.mark.parametrize("token", [None, b"a.b.c", 42, ["a", "b", "c"]])
def test_c1_non_string_token_is_malformed(token: Any) -> None:
    assert refusal(token) == reasons.TOKEN_MALFORMED


def test_c1_huge_token_is_malformed() -> None:
    token = token_for("HS256", {**CLAIMS, "padding": "x" * MAX_TOKEN_BYTES})
    assert len(token) > MAX_TOKEN_BYTES
    assert refusal(token) == reasons.TOKEN_MALFORMED
    check(token, "HS256", max_bytes=len(token))  # the bound is the only reason


def test_c1_size_bound_is_a_parameter() -> None:
    token = token_for("HS256")
    assert refusal(token, max_bytes=len(token) - 1) == reasons.TOKEN_MALFORMED
    check(token, "HS256", max_bytes=len(token))


def test_c1_huge_header_is_malformed() -> None:
    def header_of(size: int) -> dict[str, Any]:
        bare = len(encoded({"alg": "HS256", "kid": "HS256", "x": ""}))
        return {"alg": "HS256", "kid": "HS256", "x": "y" * (size - bare)}

    assert len(encoded(header_of(MAX_HEADER_BYTES))) == MAX_HEADER_BYTES
    check(signed("HS256", header_of(MAX_HEADER_BYTES), CLAIMS), "HS256")
    assert refusal(signed("HS256", header_of(MAX_HEADER_BYTES + 1), CLAIMS)) == reasons.TOKEN_MALFORMED


def test_c1_empty_signature_is_refused() -> None:
    header, payload, _ = token_for("HS256").split(".")
    assert refusal(f"{header}.{payload}.") == reasons.TOKEN_SIGNATURE_INVALID


def test_c1_modified_payload_or_header_is_refused() -> None:
    header, payload, signature = token_for("ES256").split(".")
    other_payload = b64(encoded({**CLAIMS, "sub": "admin"}))
    other_header = b64(encoded({"alg": "ES256", "kid": "ES256", "typ": "JWT", "x": 1}))
    for forged in (f"{header}.{other_payload}.{signature}", f"{other_header}.{payload}.{signature}"):
        assert refusal(forged, "ES256") == reasons.TOKEN_SIGNATURE_INVALID


def test_c4_hmac_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    check(token_for("HS256"), "HS256")
    assert len(calls) == 1


# --- property tests -------------------------------------------------------------------------------------

TOKEN_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}"\\é\0'
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _never_verifies(token: Any) -> None:
    """Against every key: refused, and only ever with JwsError."""
    for signer in signers().values():
        with pytest.raises(JwsError):
            verify(parse(token), signer.key)


@PROPERTY
@given(st.one_of(st.text(max_size=300), st.text(alphabet=TOKEN_CHARS, max_size=300)))
def test_c1_random_strings_never_verify(token: str) -> None:
    _never_verifies(token)


@st.composite
def mutated_tokens(draw: st.DrawFn) -> tuple[str, str]:
    token = token_for(draw(st.sampled_from(ALGORITHMS)))
    at = draw(st.integers(0, len(token)))
    junk = draw(st.text(TOKEN_CHARS, min_size=1, max_size=8))
    kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "shuffle", "append"]))
    if kind == "replace":
        mutated = token[:at] + junk[0] + token[at + 1 :]
    elif kind == "insert":
        mutated = token[:at] + junk + token[at:]
    elif kind == "delete":
        mutated = token[:at] + token[at + 1 :]
    elif kind == "truncate":
        mutated = token[:at]
    elif kind == "shuffle":
        mutated = ".".join(draw(st.permutations(token.split("."))))
    else:
        mutated = token + junk
    return token, mutated


@PROPERTY
@given(mutated_tokens())
def test_c1_mutated_valid_tokens_never_verify(case: tuple[str, str]) -> None:
    original, mutated = case
    assume(mutated != original)
    _never_verifies(mutated)


# --- claims ---------------------------------------------------------------------------------------------

NOW = 1_900_000_000.0


def claims_refusal(claims: dict[str, Any], **options: Any) -> str:
    arguments = {"now": NOW, "leeway": 30, "issuer": None, "audience": None, **options}
    with pytest.raises(ClaimsError) as caught:
        validate(claims, **arguments)
    return caught.value.reason


def test_c1_claims_that_fit_pass() -> None:
    claims = {"iss": "https://idp", "aud": ["other", "watchword"], "exp": NOW + 60, "nbf": NOW, "iat": NOW}
    validate(claims, now=NOW, leeway=30, issuer="https://idp", audience={"watchword", "api"})


def test_c1_expired_token_is_refused_beyond_the_leeway_only() -> None:
    assert claims_refusal({"exp": NOW - 31}) == reasons.TOKEN_EXPIRED
    assert claims_refusal({"exp": NOW - 30}) == reasons.TOKEN_EXPIRED  # exp <= now - leeway
    validate({"exp": NOW - 29}, now=NOW, leeway=30, issuer=None, audience=None)
    assert claims_refusal({"exp": NOW}, leeway=0) == reasons.TOKEN_EXPIRED


def test_c1_not_yet_valid_token_is_refused_beyond_the_leeway_only() -> None:
    assert claims_refusal({"exp": NOW + 600, "nbf": NOW + 31}) == reasons.TOKEN_NOT_YET_VALID
    validate({"exp": NOW + 600, "nbf": NOW + 30}, now=NOW, leeway=30, issuer=None, audience=None)


def test_c1_token_issued_in_the_future_is_refused() -> None:
    assert claims_refusal({"exp": NOW + 600, "iat": NOW + 31}) == reasons.TOKEN_NOT_YET_VALID


@pytest.mark.parametrize(
    "value", ["2000000000", True, None, [NOW + 60], {"t": 1}, float("inf"), float("nan")]
)
@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_c1_time_claims_must_be_numbers(name: str, value: Any) -> None:
    assert claims_refusal({"exp": NOW + 60, name: value}) == reasons.TOKEN_CLAIMS_INVALID


def test_c1_required_claims_must_be_present() -> None:
    assert claims_refusal({"sub": "u"}) == reasons.TOKEN_CLAIMS_INVALID  # exp by default
    assert claims_refusal({"exp": NOW + 60}, required=("exp", "sub", "jti")) == reasons.TOKEN_CLAIMS_INVALID


def test_c1_issuer_must_match() -> None:
    assert claims_refusal({"exp": NOW + 60, "iss": "https://evil"}, issuer="https://idp") == (
        reasons.TOKEN_ISSUER_UNKNOWN
    )
    assert claims_refusal({"exp": NOW + 60}, issuer="https://idp") == reasons.TOKEN_ISSUER_UNKNOWN


def test_c1_audience_must_name_this_service() -> None:
    assert claims_refusal({"exp": NOW + 60, "aud": "other"}, audience="watchword") == (
        reasons.TOKEN_AUDIENCE_MISMATCH
    )
    assert (
        claims_refusal({"exp": NOW + 60, "aud": []}, audience="watchword") == reasons.TOKEN_AUDIENCE_MISMATCH
    )
    assert claims_refusal({"exp": NOW + 60}, audience="watchword") == reasons.TOKEN_AUDIENCE_MISMATCH
    validate(
        {"exp": NOW + 60, "aud": "watchword"}, now=NOW, leeway=0, issuer=None, audience=["a", "watchword"]
    )


@pytest.mark.parametrize(("name", "value"), [("aud", 1), ("aud", ["watchword", 2]), ("iss", 7), ("sub", 1)])
def test_c1_registered_string_claims_must_be_strings(name: str, value: Any) -> None:
    assert (
        claims_refusal({"exp": NOW + 60, name: value}, audience="watchword") == reasons.TOKEN_CLAIMS_INVALID
    )


@pytest.mark.parametrize("leeway", [-1, MAX_LEEWAY_SECONDS + 1, True, float("nan")])
def test_c1_leeway_is_bounded(leeway: Any) -> None:
    with pytest.raises(ValueError, match="leeway"):
        validate({"exp": NOW + 60}, now=NOW, leeway=leeway, issuer=None, audience=None)


def test_c1_empty_expected_audience_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="audience"):
        validate({"exp": NOW + 60}, now=NOW, leeway=0, issuer=None, audience=[])


# --- S8: time claims bounded at parsing, for every JWT kind (issue #12) --------------------------------

TIME_NAMES = st.sampled_from(["exp", "nbf", "iat"])
out_of_range = st.one_of(
    st.integers(min_value=MAX_TIME + 1),
    st.integers(max_value=-1),
    st.floats(min_value=MAX_TIME + 1, allow_infinity=True, allow_nan=False),
    st.floats(max_value=-0.001, allow_infinity=True, allow_nan=False),
    st.just(float("nan")),
    st.booleans(),
    st.just(10**400),
)


def test_s8_far_future_exp_is_refused_with_a_reason() -> None:
    for exp in (1e12, 10**12, 253402300800, 2**63, 10**30):
        assert claims_refusal({"exp": exp}) == reasons.TOKEN_CLAIMS_INVALID


@PROPERTY
@given(TIME_NAMES, out_of_range)
def test_s8_time_claims_out_of_range_are_refused_never_raise_otherwise(name: str, value: Any) -> None:
    claims = {"exp": NOW + 60, name: value}
    assert claims_refusal(claims) == reasons.TOKEN_CLAIMS_INVALID


@PROPERTY
@given(st.one_of(st.integers(0, MAX_TIME), st.floats(0, MAX_TIME)))
def test_s8_every_accepted_time_converts_to_a_datetime_and_a_timestamp(value: float) -> None:
    """What the verifiers do with an accepted exp (Principal.expires_at, proto Timestamps) cannot fail."""
    times = {"exp": value, "nbf": value, "iat": value}
    validate(times, now=value, leeway=1, issuer=None, audience=None, required=("exp", "iat"))
    moment = datetime.fromtimestamp(float(value), UTC) + timedelta(days=365)
    Timestamp().FromDatetime(moment)


def test_c4_c7_lifetime_is_bounded_by_exp_minus_iat_and_exp_minus_now() -> None:
    day = 86400
    ok = {"exp": NOW + day, "iat": NOW}
    validate(ok, now=NOW, leeway=30, issuer=None, audience=None, max_lifetime=day)
    too_long = {"exp": NOW + day + 1, "iat": NOW}
    assert claims_refusal(too_long, max_lifetime=day) == reasons.TOKEN_LIFETIME_TOO_LONG
    # A backdated iat cannot stretch it, and without iat exp - now counts (beyond the leeway).
    assert claims_refusal({"exp": NOW + 60, "iat": NOW - day}, max_lifetime=day) == (
        reasons.TOKEN_LIFETIME_TOO_LONG
    )
    validate({"exp": NOW + day + 30}, now=NOW, leeway=30, issuer=None, audience=None, max_lifetime=day)
    assert claims_refusal({"exp": NOW + day + 31}, max_lifetime=day) == reasons.TOKEN_LIFETIME_TOO_LONG
    # Unbounded unless asked (C1 and C8 keep their own rules).
    validate({"exp": NOW + 10 * day}, now=NOW, leeway=30, issuer=None, audience=None)
