"""Inputs the fuzz tests (tests/test_fuzz_*.py) found crashing Watchword, kept as plain regression tests."""

from __future__ import annotations

import pytest

from watchword.jose import jwk


@pytest.mark.parametrize("alg", [[], ["RS256"], {}, {"RS256": 1}])
def test_c1_jwk_whose_alg_is_an_array_or_object_is_refused_not_a_type_error(alg: object) -> None:
    """A JWKS from an issuer (or a client's registered public JWK) with `"alg": []` raised TypeError."""
    with pytest.raises(jwk.KeySetError, match="alg must be a string"):
        jwk.load_jwk({"kty": "EC", "crv": "P-256", "alg": alg})
    with pytest.raises(jwk.KeySetError, match="alg must be a string"):
        jwk.load_jwks({"keys": [{"kty": "EC", "crv": "P-256", "alg": alg}]})
