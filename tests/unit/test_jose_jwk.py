"""Key loading rules of issue 3 ("Hardened verification"): each rule is its own test.

Keys are checked once, when loaded: `use`/`key_ops` honoured, weak RSA and short HMAC keys refused, one
algorithm per key, duplicate kids and mixed secret/public sets refused, EC points on their curve.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from watchword.jose import KeySetError, VerificationKey, hmac_key, load_jwk, load_jwks, public_key
from watchword.jose.jwk import _ROCA_PRIMES, decode_b64url, has_roca_fingerprint


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64int(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_jwk(rsa_private: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(rsa_private.public_key(), as_dict=True), "kid": "rsa-1"}


def ec_jwk(curve: ec.EllipticCurve, kid: str = "ec-1") -> dict[str, Any]:
    key = ec.generate_private_key(curve).public_key()
    return {**ECAlgorithm.to_jwk(key, as_dict=True), "kid": kid}


def ed25519_jwk(kid: str = "ed-1") -> dict[str, Any]:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return {**OKPAlgorithm.to_jwk(key, as_dict=True), "kid": kid}


def oct_jwk(size: int = 32, kid: str = "hs-1", alg: str | None = "HS256") -> dict[str, Any]:
    jwk = {"kty": "oct", "kid": kid, "k": b64(bytes(range(size)))}
    return jwk if alg is None else {**jwk, "alg": alg}


def refused(message_part: str) -> Any:
    return pytest.raises(KeySetError, match=message_part)


# --- use and key_ops ----------------------------------------------------------------------------------


def test_c1_key_with_use_sig_loads(rsa_jwk: dict[str, Any]) -> None:
    assert load_jwk({**rsa_jwk, "use": "sig"}).algorithm == "RS256"


def test_c1_key_with_use_enc_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with refused("'rsa-1': use is 'enc'"):
        load_jwk({**rsa_jwk, "use": "enc"})


def test_c1_key_with_key_ops_without_verify_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with refused("key_ops does not include 'verify'"):
        load_jwk({**rsa_jwk, "key_ops": ["encrypt", "wrapKey"]})


def test_c1_key_with_key_ops_verify_loads(rsa_jwk: dict[str, Any]) -> None:
    assert load_jwk({**rsa_jwk, "key_ops": ["verify"]}).kid == "rsa-1"


def test_c1_malformed_use_or_key_ops_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with refused("use must be a string"):
        load_jwk({**rsa_jwk, "use": ["sig"]})
    with refused("key_ops must be an array of strings"):
        load_jwk({**rsa_jwk, "key_ops": "verify"})


def test_c1_key_with_encryption_alg_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with refused("'RSA-OAEP' is an encryption algorithm"):
        load_jwk({**rsa_jwk, "alg": "RSA-OAEP"})


def test_c1_jwks_leaves_out_encryption_keys_but_keeps_signing_keys(rsa_jwk: dict[str, Any]) -> None:
    document = {
        "keys": [
            {**rsa_jwk, "kid": "enc-use", "use": "enc"},
            {**rsa_jwk, "kid": "enc-ops", "key_ops": ["encrypt"]},
            {**rsa_jwk, "kid": "enc-alg", "alg": "RSA-OAEP-256"},
            {**rsa_jwk, "kid": "sig", "use": "sig"},
        ]
    }
    assert list(load_jwks(document)) == ["sig"]


# --- set-level rules ----------------------------------------------------------------------------------


def test_c1_jwks_is_keyed_by_kid(rsa_jwk: dict[str, Any]) -> None:
    keys = load_jwks({"keys": [rsa_jwk, ec_jwk(ec.SECP256R1()), ed25519_jwk()]})
    assert {kid: key.algorithm for kid, key in keys.items()} == {
        "rsa-1": "RS256",
        "ec-1": "ES256",
        "ed-1": "EdDSA",
    }


def test_c1_jwks_with_duplicate_kid_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with refused("'rsa-1': kid appears more than once"):
        load_jwks({"keys": [rsa_jwk, {**ec_jwk(ec.SECP256R1()), "kid": "rsa-1"}]})


def test_c1_jwks_with_duplicate_kid_is_refused_even_when_one_key_is_for_encryption(
    rsa_jwk: dict[str, Any],
) -> None:
    with refused("kid appears more than once"):
        load_jwks({"keys": [rsa_jwk, {**rsa_jwk, "use": "enc"}]})


def test_c1_jwks_with_two_keys_without_kid_is_refused() -> None:
    first, second = ec_jwk(ec.SECP256R1()), ec_jwk(ec.SECP256R1())
    del first["kid"], second["kid"]
    with refused("key without kid: kid appears more than once"):
        load_jwks({"keys": [first, second]})


def test_c4_jwks_mixing_secret_and_public_keys_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with refused("mixes secret \\(oct\\) and public keys"):
        load_jwks({"keys": [rsa_jwk, oct_jwk()]})


def test_c4_jwks_of_secret_keys_only_loads() -> None:
    keys = load_jwks({"keys": [oct_jwk(kid="a"), oct_jwk(48, kid="b", alg="HS384")]})
    assert {kid: (key.algorithm, key.is_secret) for kid, key in keys.items()} == {
        "a": ("HS256", True),
        "b": ("HS384", True),
    }


def test_c1_one_bad_signing_key_refuses_the_whole_set(rsa_jwk: dict[str, Any]) -> None:
    weak = {**RSAAlgorithm.to_jwk(_weak_rsa_public(), as_dict=True), "kid": "weak"}
    with refused("'weak': RSA modulus of 1024 bits"):
        load_jwks({"keys": [rsa_jwk, weak]})


@pytest.mark.parametrize(
    "document",
    [[], {"keys": "nope"}, {"nokeys": []}, {"keys": [1]}, {"keys": [{"kty": "RSA", "kid": 7}]}],
    ids=["not-object", "keys-not-array", "no-keys", "key-not-object", "kid-not-string"],
)
def test_c1_malformed_jwks_document_is_refused(document: Any) -> None:
    with pytest.raises(KeySetError):
        load_jwks(document)


def test_c1_empty_jwks_is_an_empty_key_set() -> None:
    assert load_jwks({"keys": []}) == {}


# --- RSA ----------------------------------------------------------------------------------------------


def _weak_rsa_public() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()


def test_c1_rsa_key_under_2048_bits_is_refused() -> None:
    jwk = {**RSAAlgorithm.to_jwk(_weak_rsa_public(), as_dict=True), "kid": "small"}
    with refused("'small': RSA modulus of 1024 bits is outside 2048"):
        load_jwk(jwk)


def test_c1_rsa_public_exponent_one_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with pytest.raises(KeySetError, match="'rsa-1'"):
        load_jwk({**rsa_jwk, "e": "AQ"})


def test_c1_rsa_key_with_roca_fingerprint_is_refused() -> None:
    # n = 1 (mod every fingerprint prime) lies in every subgroup generated by 65537: the ROCA shape.
    product = math.prod(_ROCA_PRIMES)
    modulus = product * ((1 << 2047) // product + 1) + 1
    modulus += 0 if modulus % 2 else product  # RSA moduli are odd
    assert modulus.bit_length() == 2048
    assert has_roca_fingerprint(modulus)
    with refused("'roca': RSA modulus has the ROCA fingerprint"):
        load_jwk({"kty": "RSA", "kid": "roca", "n": b64int(modulus), "e": "AQAB"})


def test_c1_generated_rsa_key_has_no_roca_fingerprint(rsa_private: rsa.RSAPrivateKey) -> None:
    assert not has_roca_fingerprint(rsa_private.public_key().public_numbers().n)


def test_c1_rsa_without_alg_is_rs256_and_alg_fixes_the_algorithm(rsa_jwk: dict[str, Any]) -> None:
    assert load_jwk(rsa_jwk).algorithm == "RS256"
    assert load_jwk({**rsa_jwk, "alg": "PS512"}).algorithm == "PS512"


def test_c1_rsa_without_alg_takes_a_fitting_default(rsa_jwk: dict[str, Any]) -> None:
    assert load_jwk(rsa_jwk, default_algorithm="PS256").algorithm == "PS256"
    assert load_jwk(rsa_jwk, default_algorithm="ES256").algorithm == "RS256"


def test_c1_rsa_with_private_members_is_refused(rsa_private: rsa.RSAPrivateKey) -> None:
    jwk = {**RSAAlgorithm.to_jwk(rsa_private, as_dict=True), "kid": "leaked"}
    del jwk["key_ops"]  # PyJWT marks private JWKs key_ops ["sign"]; a careless publisher would not
    with refused("'leaked': carries private members \\['d', 'p', 'q', 'dp', 'dq', 'qi'\\]"):
        load_jwk(jwk)


def test_c1_rsa_with_missing_or_padded_members_is_refused(rsa_jwk: dict[str, Any]) -> None:
    without_n = {name: value for name, value in rsa_jwk.items() if name != "n"}
    with refused("member 'n' is missing"):
        load_jwk(without_n)
    with refused("member 'e'"):
        load_jwk({**rsa_jwk, "e": "AQAB="})


# --- EC and OKP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("curve", "algorithm"),
    [(ec.SECP256R1(), "ES256"), (ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")],
    ids=["P-256", "P-384", "P-521"],
)
def test_c1_ec_without_alg_follows_the_curve(curve: ec.EllipticCurve, algorithm: str) -> None:
    assert load_jwk(ec_jwk(curve)).algorithm == algorithm
    assert load_jwk(ec_jwk(curve), default_algorithm="RS256").algorithm == algorithm


def test_c1_ec_alg_for_another_curve_is_refused() -> None:
    with refused("alg 'ES256' does not fit kty EC on P-384"):
        load_jwk({**ec_jwk(ec.SECP384R1()), "alg": "ES256"})


def test_c1_ec_point_not_on_curve_is_refused() -> None:
    jwk = ec_jwk(ec.SECP256R1())
    y = decode_b64url(jwk["y"])
    with refused("the point is not on curve P-256"):
        load_jwk({**jwk, "y": b64(y[:-1] + bytes([y[-1] ^ 1]))})


def test_c1_ec_coordinates_of_the_wrong_size_are_refused() -> None:
    jwk = ec_jwk(ec.SECP256R1())
    with refused("coordinates must be 32 bytes"):
        load_jwk({**jwk, "x": b64(b"\0" + decode_b64url(jwk["x"]))})


def test_c1_ec_unsupported_curve_is_refused() -> None:
    jwk = {**ec_jwk(ec.SECP256R1()), "crv": "secp256k1"}
    with refused("unsupported EC curve 'secp256k1'"):
        load_jwk(jwk)


def test_c1_ec_with_private_member_is_refused() -> None:
    with refused("carries private members \\['d'\\]"):
        load_jwk({**ec_jwk(ec.SECP256R1()), "d": b64(bytes(32))})


def test_c1_ed25519_is_eddsa() -> None:
    assert load_jwk(ed25519_jwk()).algorithm == "EdDSA"


def test_c1_ed448_is_refused() -> None:
    key = ed448.Ed448PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    with refused("unsupported OKP curve 'Ed448'"):
        load_jwk({"kty": "OKP", "crv": "Ed448", "x": b64(raw), "kid": "ed448"})


def test_c1_es521_spelling_is_read_as_es512_on_p521_only() -> None:
    assert load_jwk({**ec_jwk(ec.SECP521R1()), "alg": "ES521"}).algorithm == "ES512"
    with refused("alg 'ES521' does not fit kty EC on P-256"):
        load_jwk({**ec_jwk(ec.SECP256R1()), "alg": "ES521"})


# --- algorithms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "ES224", "HS1", "RS1", "A256GCM"])
def test_c1_unknown_or_non_signature_alg_is_refused(rsa_jwk: dict[str, Any], alg: str) -> None:
    with pytest.raises(KeySetError, match="'rsa-1'"):
        load_jwk({**rsa_jwk, "alg": alg})


def test_c1_alg_that_does_not_fit_the_key_type_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with refused("alg 'HS256' does not fit kty RSA"):
        load_jwk({**rsa_jwk, "alg": "HS256"})
    with refused("alg 'RS256' does not fit kty oct"):
        load_jwk(oct_jwk(alg="RS256"))


def test_c1_unsupported_kty_is_refused() -> None:
    with refused("unsupported kty 'DSA'"):
        load_jwk({"kty": "DSA", "kid": "old"})


def test_c1_unsupported_default_algorithm_is_refused(rsa_jwk: dict[str, Any]) -> None:
    with refused("default_algorithm 'none'"):
        load_jwk(rsa_jwk, default_algorithm="none")


# --- HMAC ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_c4_hmac_key_shorter_than_its_hash_is_refused(alg: str, minimum: int) -> None:
    assert load_jwk(oct_jwk(minimum, alg=alg)).algorithm == alg
    with refused(f"{alg} secret is {minimum - 1} bytes, shorter than {minimum}"):
        load_jwk(oct_jwk(minimum - 1, alg=alg))


def test_c4_empty_hmac_key_is_refused() -> None:
    with refused("secret is 0 bytes"):
        load_jwk({**oct_jwk(), "k": ""})


def test_c4_oct_without_alg_is_refused_unless_a_default_fits() -> None:
    with refused("an oct key needs an alg"):
        load_jwk(oct_jwk(alg=None))
    with refused("an oct key needs an alg"):
        load_jwk(oct_jwk(alg=None), default_algorithm="RS256")
    assert load_jwk(oct_jwk(48, alg=None), default_algorithm="HS384").algorithm == "HS384"


def test_c4_hmac_key_helper_checks_length_and_algorithm() -> None:
    key = hmac_key(b"s" * 32, kid="tenant-secret-1")
    assert (key.kid, key.algorithm, key.is_secret) == ("tenant-secret-1", "HS256", True)
    with refused("'t': HS512 secret is 32 bytes"):
        hmac_key(b"s" * 32, kid="t", algorithm="HS512")
    with refused("'RS256' is not an HMAC algorithm"):
        hmac_key(b"s" * 64, kid="t", algorithm="RS256")
    with refused("an HMAC secret must be bytes"):
        hmac_key("s" * 64, kid="t")  # type: ignore[arg-type]


def test_c4_hmac_secret_never_appears_in_repr() -> None:
    assert "s" * 32 not in repr(hmac_key(b"s" * 32, kid="t"))


# --- public_key and VerificationKey invariants --------------------------------------------------------


def test_c8_public_key_helper_accepts_fitting_keys(rsa_private: rsa.RSAPrivateKey) -> None:
    assert public_key(rsa_private.public_key(), kid="w1", algorithm="PS256").algorithm == "PS256"
    ec_key = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert public_key(ec_key, kid="w2", algorithm="ES384").is_secret is False
    ed_key = ed25519.Ed25519PrivateKey.generate().public_key()
    assert public_key(ed_key, kid="w3", algorithm="EdDSA").key is ed_key


def test_c8_public_key_helper_refuses_mismatches(rsa_private: rsa.RSAPrivateKey) -> None:
    with refused("ES256 needs curve P-256, not secp384r1"):
        public_key(ec.generate_private_key(ec.SECP384R1()).public_key(), kid="k", algorithm="ES256")
    with refused("EdDSA needs an Ed25519 public key"):
        public_key(rsa_private.public_key(), kid="k", algorithm="EdDSA")
    with refused("RS256 needs an RSA public key"):
        public_key(rsa_private, kid="k", algorithm="RS256")  # a private key is not a public key
    with refused("HS256 is an HMAC algorithm"):
        public_key(rsa_private.public_key(), kid="k", algorithm="HS256")
    with refused("RSA modulus of 1024 bits"):
        public_key(_weak_rsa_public(), kid="k", algorithm="RS256")


def test_c4_verification_key_cannot_pair_hmac_with_a_public_key(rsa_private: rsa.RSAPrivateKey) -> None:
    """The HS/RS confusion is impossible to even build: HMAC keys are bytes, public keys never are."""
    pem = rsa_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with refused("HS256 needs a secret given as bytes"):
        VerificationKey(kid="k", algorithm="HS256", key=rsa_private.public_key(), is_secret=True)
    with refused("HS256 needs a secret given as bytes"):
        VerificationKey(kid="k", algorithm="HS256", key=pem, is_secret=False)
    with refused("RS256 needs a public key, never a secret"):
        VerificationKey(kid="k", algorithm="RS256", key=pem, is_secret=True)
    with refused("unsupported algorithm 'none'"):
        VerificationKey(kid="k", algorithm="none", key=b"k" * 64, is_secret=True)


def test_c1_verification_key_is_immutable(rsa_jwk: dict[str, Any]) -> None:
    key = load_jwk(rsa_jwk)
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.algorithm = "HS256"  # type: ignore[misc]
