"""Every verifier has the one interface (identify/verifier.py), and the registry (identify/verifiers.py)
offers a JWT to them in the routing order the README describes."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from watchword import reasons
from watchword.crypto import master_key
from watchword.crypto.master_key import MasterKey
from watchword.domain import PresentedCredential, Refusal, Transport
from watchword.identify import kinds, verifier, verifiers
from watchword.identify.client_certificate import ClientCertificateVerifier
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.identify.oauth_client import ClientAuthenticator
from watchword.identify.opaque_secret import OpaqueSecretVerifier
from watchword.identify.sealed_keys import SealedKeys
from watchword.identify.subject_jwt import SubjectJwtVerifier
from watchword.identify.tenant_jwt import TenantJwtVerifier
from watchword.identify.watchword_token import SigningKeyRing, WatchwordTokenVerifier
from watchword.jose import jws

JWT_VERIFIERS = (SubjectJwtVerifier, TenantJwtVerifier, WatchwordTokenVerifier, ExternalJwtVerifier)
ALL_VERIFIERS = (OpaqueSecretVerifier, ClientAuthenticator, *JWT_VERIFIERS)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def _nothing(_id: str) -> None:
    return None


async def _no_keys() -> list:
    return []


def _dependencies(external: ExternalJwtVerifier | None = None) -> verifiers.Dependencies:
    sealed = SealedKeys(MasterKey.from_text(master_key.generate(), "test"))
    ring = SigningKeyRing(_no_keys)
    return verifiers.Dependencies(_nothing, sealed, ring, verifier.JwtSettings(), external)


@pytest.mark.parametrize("cls", ALL_VERIFIERS, ids=lambda cls: cls.__name__)
def test_every_verifier_has_the_one_verify_signature(cls: type) -> None:
    verify = cls.verify
    assert inspect.iscoroutinefunction(verify)
    names = list(inspect.signature(verify).parameters)
    assert len(names) == 3, names
    assert (names[0], names[2]) == ("self", "now")


@pytest.mark.parametrize("cls", JWT_VERIFIERS, ids=lambda cls: cls.__name__)
def test_every_jwt_verifier_says_which_tokens_are_its_own(cls: type) -> None:
    assert list(inspect.signature(cls.recognises).parameters) == ["self", "jwt"]
    assert not inspect.iscoroutinefunction(cls.recognises)


def test_every_kind_accepted_for_authentication_has_one_verifier() -> None:
    # JWT verifiers name their kind; every other kind with transports is an opaque secret (a prefix), or
    # C10, the one secretless kind, verified by its certificate (its own verifier names its kind).
    jwt_kinds = {cls.kind for cls in JWT_VERIFIERS}
    secret_kinds = {kind for kind in kinds.PREFIXES if kinds.TRANSPORTS[kind]}
    certificate_kinds = {ClientCertificateVerifier.kind}
    assert certificate_kinds == kinds.SECRETLESS
    assert not jwt_kinds & secret_kinds
    accepted = {kind for kind, transports in kinds.TRANSPORTS.items() if transports}
    assert jwt_kinds | secret_kinds | certificate_kinds == accepted


def test_the_registry_routes_c7_then_c4_then_c8_then_c1() -> None:
    external = ExternalJwtVerifier([])
    built = verifiers.jwt_verifiers(_dependencies(external))
    assert [type(v) for v in built] == list(JWT_VERIFIERS)
    assert built[-1] is external
    without_issuers = verifiers.jwt_verifiers(_dependencies())
    assert [type(v) for v in without_issuers] == list(JWT_VERIFIERS[:-1])


def _jwt(token: str, transport: Transport = Transport.BEARER, client_id: str = "") -> verifier.PresentedJwt:
    return verifier.PresentedJwt(PresentedCredential(token, transport, client_id), jws.parse(token))


def test_c7_c4_c8_each_recognise_their_own_tokens() -> None:
    subject, tenant, own = verifiers.jwt_verifiers(_dependencies())
    hmac = pyjwt.encode({"iss": "urn:watchword"}, "k" * 32, algorithm="HS256")
    assert subject.recognises(_jwt(hmac, Transport.HEADER_PAIR))
    assert subject.recognises(_jwt(hmac, Transport.BARE, client_id="connector"))
    assert not subject.recognises(_jwt(hmac))
    assert tenant.recognises(_jwt(hmac))
    assert own.recognises(_jwt(hmac))
    assert not own.recognises(_jwt(pyjwt.encode({}, "k" * 32)))


async def test_t1_t7_the_router_refuses_a_jwt_over_a_transport_its_kind_does_not_list() -> None:
    token = pyjwt.encode({"iss": "urn:watchword"}, "k" * 32, algorithm="HS256")
    router = verifiers.JwtRouter(verifiers.jwt_verifiers(_dependencies()), 8192)
    refusal = await router.verify(PresentedCredential(token, Transport.BASIC, "someone"), NOW)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == reasons.TRANSPORT_NOT_ALLOWED  # C7 (beside an id) is never over Basic


async def test_a_jwt_no_verifier_recognises_is_of_an_unknown_issuer() -> None:
    token = pyjwt.encode({"iss": "elsewhere"}, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    router = verifiers.JwtRouter(verifiers.jwt_verifiers(_dependencies()), 8192)
    refusal = await router.verify(PresentedCredential(token, Transport.BEARER), NOW)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == reasons.TOKEN_ISSUER_UNKNOWN
    malformed = await router.verify(PresentedCredential("a.b.c", Transport.BEARER), NOW)
    assert isinstance(malformed, Refusal)
    assert malformed.reason == reasons.TOKEN_MALFORMED


def test_t1_t7_a_kind_is_refused_over_a_transport_not_its_own() -> None:
    accepted = frozenset({Transport.BEARER})
    assert verifier.transport_refusal(Transport.BEARER, accepted) is None
    refusal = verifier.transport_refusal(Transport.QUERY, accepted)
    assert refusal is not None
    assert refusal.reason == reasons.TRANSPORT_NOT_ALLOWED
    assert refusal.www_authenticate == 'Bearer realm="watchword"'
