"""Fuzzing the token formats: Watchword's opaque secrets, strict base64url, compact JWS, JWKs and claims.

unit/test_secret_format.py and unit/test_jose_jws.py already check that random text never parses and that
mutated tokens never verify. These add round trips (mint/parse, base64url, a JWS built from random
JSON), the uniqueness of every accepted spelling, and structured garbage for JWK and claim parsing: every
answer is a value or the documented error type, never another exception.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from watchword import reasons, secret_format
from watchword.domain import CredentialKind
from watchword.jose import claims as jwt_claims
from watchword.jose import jwk, jws

from support.fuzz_settings import fuzz

T = TypeVar("T")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def outcome(call: Callable[[], T], *errors: type[Exception]) -> T | Exception:
    """The call's value, or the exception it raised if it is one of `errors` (any other propagates)."""
    try:
        return call()
    except errors as error:
        return error


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ---- opaque secrets (C2, C3, C5, C6, C9, admin tokens) --------------------------------------------------


@fuzz(examples=200)
@given(st.sampled_from(list(secret_format.PREFIXES)), st.text(BASE62, min_size=16, max_size=16))
def test_c2_c3_c5_minted_secrets_parse_back_and_hint_only_their_id(kind: CredentialKind, ident: str) -> None:
    secret = secret_format.mint(kind, ident)
    parsed = secret_format.parse(secret)
    assert parsed == secret_format.ParsedSecret(kind=kind, credential_id=ident)
    hint = secret_format.hint(secret)
    assert hint == f"{secret_format.PREFIXES[kind]}_{ident}"
    assert secret[len(hint) + 1 :] not in hint


@fuzz(examples=300)
@given(
    st.one_of(
        # Exactly the length of a secret, any characters: reaches the pattern and checksum checks.
        st.text(min_size=secret_format.TOKEN_LENGTH, max_size=secret_format.TOKEN_LENGTH),
        st.text(st.characters(codec="ascii"), min_size=60, max_size=60),
        # Well-shaped, with look-alike digits and letters from other scripts.
        st.builds(
            lambda p, i, r: f"ww{p}_{i}_{r}",
            st.text(min_size=2, max_size=2),
            st.text(BASE62 + "٣Ａｚ", min_size=16, max_size=16),
            st.text(BASE62 + "٣Ａｚ", min_size=38, max_size=38),
        ),
    )
)
def test_c2_c3_c5_any_secret_shaped_text_parses_to_none_or_a_known_kind(text: str) -> None:
    parsed = secret_format.parse(text)
    if parsed is not None:
        assert parsed.kind in secret_format.PREFIXES
        assert secret_format.is_credential_id(parsed.credential_id)
        assert text.isascii()
    secret_format.hint(text)  # never raises, whatever it is given


# ---- strict base64url (RFC 7515 §2) --------------------------------------------------------------------


@fuzz(examples=300)
@given(st.binary(max_size=300))
def test_c1_base64url_round_trips(data: bytes) -> None:
    assert jwk.decode_b64url(b64url(data)) == data


@fuzz(examples=300)
@given(st.one_of(st.text(B64URL, max_size=40), st.text(B64URL + "=+/ \n.é\x00", max_size=40), st.text()))
def test_c1_base64url_accepts_each_value_under_one_spelling_only(text: str) -> None:
    """A decoded text is the canonical encoding of its bytes: no token has two accepted spellings."""
    try:
        data = jwk.decode_b64url(text)
    except ValueError:
        return
    assert b64url(data) == text


# ---- compact JWS ------------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
algorithms = st.sampled_from(sorted(jws.SUPPORTED_ALGORITHMS))


@fuzz(examples=100)
@given(json_objects, json_objects, algorithms, st.binary(max_size=140))
def test_c1_c4_c8_a_jws_of_random_json_parses_back_to_the_same_header_and_claims(
    extra_header: dict[str, object], claims: dict[str, object], alg: str, signature: bytes
) -> None:
    header = {**extra_header, "alg": alg}
    header.pop("crit", None)
    header.pop("b64", None)
    if not isinstance(header.get("kid", ""), str):
        header.pop("kid")
    token = ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)]
    )
    parsed = outcome(lambda: jws.parse(token), jws.JwsError)
    if isinstance(parsed, jws.JwsError):
        # Only the size bounds may refuse a well-formed token.
        assert parsed.reason == reasons.TOKEN_MALFORMED
        assert len(token) > jws.MAX_TOKEN_BYTES or len(json.dumps(header)) > jws.MAX_HEADER_BYTES
        return
    assert parsed.header == header
    assert parsed.claims == claims
    assert parsed.signature == signature
    assert parsed.algorithm == alg


segments = st.one_of(
    st.text(B64URL, max_size=60),
    st.builds(lambda v: b64url(json.dumps(v).encode()), json_values),
    st.builds(b64url, st.binary(max_size=60)),
    st.text(max_size=20),
)


@fuzz(examples=150)
@given(st.lists(segments, min_size=1, max_size=5).map(".".join))
def test_c1_any_dotted_text_parses_or_is_refused_with_a_token_reason(token: str) -> None:
    parsed = outcome(lambda: jws.parse(token), jws.JwsError)
    if isinstance(parsed, jws.JwsError):
        assert parsed.reason in reasons.REASONS
        assert parsed.reason.startswith("token_")
        return
    assert isinstance(parsed.header, dict)
    assert isinstance(parsed.claims, dict)
    assert parsed.algorithm in jws.SUPPORTED_ALGORITHMS


# ---- JWK and JWK sets -------------------------------------------------------------------------------------

members = st.one_of(
    st.builds(b64url, st.binary(max_size=70)),
    st.sampled_from([b64url(b"\x01\x00\x01"), b64url(b"\x00" * 32), b64url(b"\xff" * 66)]),
    json_values,
)
jwk_dicts = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["RSA", "EC", "OKP", "oct", "", "rsa"]) | json_values,
        "crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "X25519", "secp256k1"]) | json_values,
        "alg": st.sampled_from([*sorted(jws.SUPPORTED_ALGORITHMS), "ES521", "none", "RSA-OAEP"])
        | json_values,
        "use": st.sampled_from(["sig", "enc"]) | json_values,
        "key_ops": st.lists(st.sampled_from(["verify", "sign", "encrypt"])) | json_values,
        "kid": st.text(max_size=10) | json_values,
        "n": members,
        "e": members,
        "x": members,
        "y": members,
        "k": members,
        "d": members,
    },
)


@fuzz(examples=150)
@given(jwk_dicts, st.sampled_from([None, "RS256", "ES256", "HS256", "EdDSA", "XX1"]))
def test_c1_any_jwk_loads_as_a_usable_key_or_is_refused_with_key_set_error(
    candidate: dict[str, object], default: str | None
) -> None:
    try:
        key = jwk.load_jwk(candidate, default_algorithm=default)
    except jwk.KeySetError:
        return
    assert key.algorithm in jwk.SUPPORTED_ALGORITHMS
    assert key.is_secret == (candidate.get("kty") == "oct")


@fuzz(examples=80)
@given(st.one_of(st.fixed_dictionaries({"keys": st.lists(jwk_dicts, max_size=4)}), json_values))
def test_c1_any_jwk_set_loads_or_is_refused_with_key_set_error(document: object) -> None:
    try:
        keys = jwk.load_jwks(document)  # type: ignore[arg-type]
    except jwk.KeySetError:
        return
    assert all(kid == key.kid for kid, key in keys.items())


# ---- registered claims ------------------------------------------------------------------------------------

times = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
)
claim_sets = st.fixed_dictionaries(
    {},
    optional={
        "exp": times,
        "nbf": times,
        "iat": times,
        "iss": st.sampled_from(["urn:watchword", "other"]) | json_values,
        "aud": st.sampled_from(["urn:watchword:api", ["urn:watchword:api", "x"], []]) | json_values,
        "sub": json_values,
        "jti": json_values,
    },
)


@fuzz(examples=150)
@given(claim_sets, st.floats(min_value=0, max_value=2**40), st.floats(min_value=0, max_value=120))
def test_c1_any_claim_set_is_accepted_or_refused_with_claims_error(
    claims: dict[str, object], now: float, leeway: float
) -> None:
    refused = outcome(
        lambda: jwt_claims.validate(
            claims, now=now, leeway=leeway, issuer="urn:watchword", audience="urn:watchword:api"
        ),
        jwt_claims.ClaimsError,
    )
    if isinstance(refused, jwt_claims.ClaimsError):
        assert refused.reason in reasons.REASONS
        return
    exp = claims["exp"]
    assert isinstance(exp, int | float)
    assert not isinstance(exp, bool)
    assert math.isfinite(exp)
    assert exp > now - leeway
