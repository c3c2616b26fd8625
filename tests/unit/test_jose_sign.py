"""O3/O4: `jose.sign`, the one place Watchword signs a JWT (client assertions) and makes a signing key.

Every token it signs is checked by an independent verifier (PyJWT) and by Watchword's own `jose.jws`.
"""

from __future__ import annotations

import base64
import json
import warnings

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from watchword.jose import jws, load_jwk
from watchword.jose.sign import SIGNING_ALGORITHMS, generate_key, sign_jwt

CLAIMS = {"iss": "client", "sub": "client", "aud": "https://token.example/t", "iat": 1, "exp": 2, "jti": "j"}
NO_TIME = {"verify_exp": False, "verify_iat": False, "verify_aud": False}


def segment(token: str, index: int) -> dict[str, object]:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_o3_hs256_signs_with_a_short_secret_without_a_warning():
    """client_secret_jwt: the customer chose the secret; PyJWT's short-key warning must not fire."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = sign_jwt(CLAIMS, "short", "HS256")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the verifier side may warn; only the signer is under test
        assert jwt.decode(token, "short", algorithms=["HS256"], options=NO_TIME) == CLAIMS
    assert segment(token, 0) == {"alg": "HS256", "typ": "JWT"}


def test_o3_hs256_signs_with_a_secret_that_looks_like_a_pem_key():
    """PyJWT's prepare_key refuses such HMAC keys; a customer's secret must still sign."""
    secret = "-----BEGIN PUBLIC KEY-----not really"
    token = sign_jwt(CLAIMS, secret, "HS256")
    parsed = jws.parse(token)
    assert jws.verify(parsed, load_jwk({"kty": "oct", "k": _b64(secret.encode()), "alg": "HS256"})) is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_o4_asymmetric_signatures_verify_with_the_generated_public_jwk(algorithm):
    private, public_jwk = generate_key(algorithm)
    token = sign_jwt(CLAIMS, private, algorithm, {"kid": "oc_1"})
    assert segment(token, 0) == {"alg": algorithm, "kid": "oc_1", "typ": "JWT"}
    public = jwt.PyJWK(public_jwk | {"alg": algorithm})
    assert jwt.decode(token, public.key, algorithms=[algorithm], options=NO_TIME) == CLAIMS


def test_o4_generated_keys_are_of_the_promised_kind():
    assert isinstance(generate_key("ES256")[0], ec.EllipticCurvePrivateKey)
    assert isinstance(generate_key("EdDSA")[0], ed25519.Ed25519PrivateKey)
    private, public_jwk = generate_key("RS256")
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 3072
    assert set(public_jwk) >= {"kty", "n", "e"}
    assert "d" not in public_jwk  # the public half only


@pytest.mark.parametrize("algorithm", ["none", "HS512", "PS256", ""])
def test_o3_an_algorithm_not_offered_is_a_value_error(algorithm):
    with pytest.raises(ValueError, match="cannot sign"):
        sign_jwt(CLAIMS, "secret", algorithm)
    assert algorithm not in SIGNING_ALGORITHMS


def test_o3_hs256_needs_a_secret_not_a_key_object():
    with pytest.raises(ValueError, match="HS256"):
        sign_jwt(CLAIMS, ec.generate_private_key(ec.SECP256R1()), "HS256")


def test_o4_no_key_generated_for_an_unknown_algorithm():
    with pytest.raises(ValueError, match="cannot generate"):
        generate_key("HS256")
