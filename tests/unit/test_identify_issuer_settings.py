"""S7: an issuer grants roles only in the organizations bound to it (`organizations`), and with several
issuers one whose tokens assert roles must be bound; checked at start, in the verifier and in the rules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pydantic
import pytest

from watchword import reasons
from watchword.decide.catalogue import Catalogue
from watchword.decide.rules import decide
from watchword.domain import CredentialKind, Principal, Resource, Transport
from watchword.identify.external_jwt import ExternalJwtVerifier, bound_memberships
from watchword.identify.issuer_settings import IssuerSettings, load_issuers

from support.jwks_server import JwksServer
from support.jwt_verify import verify_jwt


def _table(issuer: str, **values: Any) -> dict[str, Any]:
    return {"issuer": issuer, "audiences": ["api"], "jwks_uri": f"{issuer}/certs", **values}


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    with JwksServer(algorithms=("ES256",)) as server:
        yield server


def test_s7_several_issuers_asserting_roles_must_each_name_their_organizations() -> None:
    claims = {"organizations_claim": "orgs"}
    with pytest.raises(pydantic.ValidationError, match=r"https://b\.example.*organizations = \["):
        load_issuers(
            [
                _table("https://a.example", organizations=["org-a"], **claims),
                _table("https://b.example", **claims),
            ]
        )
    # One issuer: trusted everywhere, as before. Several: bound, "*" on purpose, or roles stored only.
    assert load_issuers([_table("https://a.example", **claims)])[0].binds("any-org")
    several = load_issuers(
        [
            _table("https://a.example", organizations=["org-a"], **claims),
            _table("https://b.example", organizations=["*"], **claims),
            _table("https://c.example", roles_source="memberships", **claims),
            _table("https://d.example"),  # reads no roles from its tokens
        ]
    )
    assert [entry.binds("org-a") for entry in several] == [True, True, True, True]
    assert [entry.binds("org-b") for entry in several] == [False, True, True, True]


@pytest.mark.parametrize("organizations", [[], ["*", "org-a"], [""], ["x" * 256]])
def test_s7_an_organizations_setting_that_says_nothing_clear_is_refused(organizations: list[str]) -> None:
    with pytest.raises(pydantic.ValidationError):
        IssuerSettings.model_validate(_table("https://a.example", organizations=organizations))


def test_s7_roles_in_organizations_outside_the_binding_are_dropped_and_named() -> None:
    settings = IssuerSettings.model_validate(_table("https://a.example", organizations=["org-a", "org-c"]))
    granted = (("org-a", ("admin",)), ("org-b", ("admin",)), ("org-c", ("viewer",)))
    assert bound_memberships(granted, settings) == (
        (("org-a", ("admin",)), ("org-c", ("viewer",))),
        ("org-b",),
    )
    everywhere = IssuerSettings.model_validate(_table("https://a.example", organizations=["*"]))
    assert bound_memberships(granted, everywhere) == (granted, ())


@pytest.mark.server
async def test_s7_a_token_claiming_roles_beyond_its_issuers_organizations_keeps_only_the_bound_ones(
    idp: JwksServer,
) -> None:
    settings = IssuerSettings(
        issuer=idp.issuer,
        audiences=("api",),
        jwks_uri=idp.jwks_uri,
        allow_insecure_http=True,
        organizations_claim="orgs",
        organizations=("org-a",),
    )
    now = int(time.time())
    token = idp.sign(
        {
            "iss": idp.issuer, "aud": "api", "sub": "alice", "iat": now, "exp": now + 300,
            "orgs": {"org-a": ["editor"], "org-b": ["admin"]},
        }
    )  # fmt: skip
    async with httpx.AsyncClient(trust_env=False) as client:
        verifier = ExternalJwtVerifier([settings], client)
        await verifier.start()
        try:
            principal = await asyncio.wait_for(verify_jwt(verifier, token, Transport.BEARER, now), 10)
        finally:
            await verifier.close()
    assert isinstance(principal, Principal), principal
    assert principal.memberships == (("org-a", ("editor",)),)
    assert principal.unbound_organizations == ("org-b",)
    catalogue = Catalogue.load(None)
    elsewhere = decide(catalogue, principal, "application.create", Resource(organization_id="org-b"))
    assert (elsewhere.allowed, elsewhere.reason, elsewhere.rule) == (False, reasons.ISSUER_NOT_BOUND, "S7")
    assert decide(catalogue, principal, "application.create", Resource(organization_id="org-a")).allowed
    never_claimed = decide(catalogue, principal, "application.create", Resource(organization_id="org-c"))
    assert (never_claimed.reason, never_claimed.rule) == (reasons.NOT_A_MEMBER, "S1")


def test_s7_a_principal_without_unbound_organizations_is_decided_as_before() -> None:
    user = Principal(
        id="u",
        kind=CredentialKind.EXTERNAL_JWT,
        transport=Transport.BEARER,
        memberships=(("o", ("viewer",)),),
    )
    decision = decide(Catalogue.load(None), user, "organization.get", Resource(organization_id="elsewhere"))
    assert (decision.reason, decision.rule) == (reasons.NOT_A_MEMBER, "S1")
