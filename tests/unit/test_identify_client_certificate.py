"""C10 in process: certificates generated here, verified against a CA bundle, mapped to service identities
stored through the same minting the admin API uses, and decided by the S3 rule; XFCC read only when the
operator trusts it."""

from __future__ import annotations

import datetime
from datetime import UTC
from datetime import datetime as DateTime
from urllib.parse import quote

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from watchword import reasons
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind, FieldError, HttpParts, Principal, Refusal, Resource, Transport
from watchword.ext_authz.core import Allowed, Denied, ExtAuthzCore, ExtAuthzSettings
from watchword.extract import TransportSettings
from watchword.identify import client_certificate, minting
from watchword.identify.client_certificate import CertificateSettings, service_identity, spiffe_id_problem
from watchword.pipeline import PeerCertificate, Pipeline
from watchword.routes import RouteSettings, RouteTable
from watchword.store.change_feed import ChangeKind
from watchword.store.repository import Store

from support.certificates import Issued, certificate_authority
from support.certificates import client_certificate as issue

MASTER = MasterKey.from_text(generate(), "test")
SPIFFE_ID = "spiffe://example.org/ns/billing/sa/worker"
CA = certificate_authority()
OTHER_CA = certificate_authority("another CA")
CERTIFICATES = TransportSettings(client_certificates=True)


def _pem(*issued: Issued) -> str:
    return "".join(item.pem.decode() for item in issued)


async def _pipeline(
    store: Store, transports: TransportSettings = CERTIFICATES, **options: object
) -> Pipeline:
    settings = CertificateSettings(authorities=(CA.certificate,), **options)  # type: ignore[arg-type]
    return Pipeline(store, Catalogue.load(), transports, MASTER, certificates=settings)


async def _register(
    store: Store, identity: str, permissions: tuple[str, ...] = ("event.send",)
) -> tuple[str, str]:
    """An organization and a C10 credential for `identity`: their ids."""
    organization = await store.create_organization("workloads")
    spec = minting.NewCredential(
        kind=CredentialKind.CLIENT_CERTIFICATE,
        name="billing worker",
        organization_id=organization.id,
        permissions=permissions,
        service_identity=identity,
    )
    row, secret = minting.create(spec, Catalogue.load(), MASTER, DateTime.now(UTC))
    assert secret == ""
    assert row.secret_hash == ""
    await store.add_credential(row)
    return organization.id, row.id


async def _refused(pipeline: Pipeline, pem: str) -> str:
    result = await pipeline.authenticate(PeerCertificate(pem))
    assert isinstance(result, Refusal), result
    return result.reason


# ---- identities ----


@pytest.mark.parametrize(
    "value",
    [
        "spiffe://Example.org/a",  # uppercase trust domain
        "spiffe://example.org:8443/a",  # port
        "spiffe://user@example.org/a",  # userinfo
        "spiffe://example.org/a?x=1",  # query
        "spiffe://example.org/a#f",  # fragment
        "spiffe://example.org/a//b",  # empty segment
        "spiffe://example.org/a/../b",  # dot segment
        "spiffe://example.org/a/",  # trailing slash
        "spiffe:///a",  # no trust domain
        "SPIFFE://example.org/a",  # scheme not lowercase
    ],
)
def test_c10_spiffe_ids_follow_the_spec(value: str) -> None:
    assert spiffe_id_problem(value) is not None
    with pytest.raises(client_certificate.IdentityError):
        service_identity(value)


def test_c10_valid_identities_are_stored_in_one_form() -> None:
    assert spiffe_id_problem(SPIFFE_ID) is None
    assert service_identity("spiffe://example.org") == "spiffe://example.org"
    assert service_identity("CN=billing,O=Example") == "CN=billing,O=Example"
    assert service_identity("CN=a\\,b,O=Example") == "CN=a\\,b,O=Example"
    for bad in ("not a name", "CN=billing, O=Example", ""):
        with pytest.raises(client_certificate.IdentityError):
            service_identity(bad)


def test_c10_minting_requires_an_identity_and_refuses_it_on_other_kinds() -> None:
    catalogue = Catalogue.load()
    now = DateTime.now(UTC)
    spec = minting.NewCredential(kind=CredentialKind.CLIENT_CERTIFICATE, name="w", organization_id="o")
    with pytest.raises(FieldError, match="service_identity"):
        minting.create(spec, catalogue, MASTER, now)
    other = minting.NewCredential(
        kind=CredentialKind.API_KEY, name="k", organization_id="o", service_identity=SPIFFE_ID
    )
    with pytest.raises(FieldError, match="service_identity"):
        minting.create(other, catalogue, MASTER, now)


# ---- the pipeline: verified, mapped, decided ----


async def test_c10_a_good_certificate_maps_to_its_service_identity_and_s3_decides(store: Store) -> None:
    organization, credential_id = await _register(store, SPIFFE_ID)
    pipeline = await _pipeline(store)
    pem = _pem(issue(CA, spiffe_id=SPIFFE_ID))
    principal = await pipeline.authenticate(PeerCertificate(pem))
    assert isinstance(principal, Principal)
    assert principal.kind is CredentialKind.CLIENT_CERTIFICATE
    assert principal.transport is Transport.CLIENT_CERTIFICATE
    assert (principal.credential_id, principal.organization_id) == (credential_id, organization)
    application = await store.create_application(organization, "app")
    resource = Resource(application_id=application.id, event_type="order.paid")
    allowed = await pipeline.authorize(PeerCertificate(pem), "event.send", resource)
    assert (allowed.decision.allowed, allowed.decision.rule) == (True, "S3")
    denied = await pipeline.authorize(PeerCertificate(pem), "application.create", Resource(organization))
    assert (denied.decision.reason, denied.decision.rule) == (reasons.ACTION_NOT_GRANTED, "S3")
    # S7: never outside its organization.
    stranger = await store.create_organization("other")
    elsewhere = await pipeline.authorize(
        PeerCertificate(pem), "event.send", Resource(stranger.id, "x", "a.b")
    )
    assert elsewhere.decision.allowed is False


async def test_c10_every_bad_certificate_has_its_reason(store: Store) -> None:
    await _register(store, SPIFFE_ID)
    pipeline = await _pipeline(store)
    hour = datetime.timedelta(hours=1)
    cases = {
        reasons.CLIENT_CERTIFICATE_EXPIRED: issue(
            CA, spiffe_id=SPIFFE_ID, valid_from=-2 * hour, valid_for=hour
        ),
        reasons.CLIENT_CERTIFICATE_NOT_YET_VALID: issue(CA, spiffe_id=SPIFFE_ID, valid_from=hour),
        reasons.CLIENT_CERTIFICATE_UNTRUSTED: issue(OTHER_CA, spiffe_id=SPIFFE_ID),
        reasons.CLIENT_CERTIFICATE_USAGE_INVALID: issue(
            CA, spiffe_id=SPIFFE_ID, usages=(ExtendedKeyUsageOID.SERVER_AUTH,)
        ),
        reasons.CLIENT_CERTIFICATE_SAN_MISSING: issue(CA, dns=("worker.example.org",)),
        reasons.CLIENT_CERTIFICATE_SAN_INVALID: issue(CA, spiffe_id=SPIFFE_ID, uris=("https://x.example",)),
        reasons.SERVICE_IDENTITY_UNKNOWN: issue(CA, spiffe_id="spiffe://example.org/ns/billing/sa/other"),
    }
    for reason, certificate in cases.items():
        assert await _refused(pipeline, _pem(certificate)) == reason, reason
    assert await _refused(pipeline, "") == reasons.CLIENT_CERTIFICATE_MISSING
    assert (
        await _refused(pipeline, "-----BEGIN CERTIFICATE-----\nnot base64\n") == reasons.CREDENTIAL_MALFORMED
    )


async def test_c10_the_mapping_is_exact(store: Store) -> None:
    await _register(store, SPIFFE_ID)
    pipeline = await _pipeline(store)
    stranger = "spiffe://example.org/ns/billing/sa/stranger"
    refusal = await pipeline.authenticate(PeerCertificate(_pem(issue(CA, spiffe_id=stranger))))
    assert isinstance(refusal, Refusal)
    assert refusal.detail == f"identity {stranger}"  # for the audit log: which workload to register
    for near in (SPIFFE_ID + "/child", SPIFFE_ID[:-1], SPIFFE_ID.replace("billing", "Billing")):
        assert await _refused(pipeline, _pem(issue(CA, spiffe_id=near))) == reasons.SERVICE_IDENTITY_UNKNOWN


async def test_c10_intermediates_in_the_presented_chain_are_used(store: Store) -> None:
    await _register(store, SPIFFE_ID)
    pipeline = await _pipeline(store)
    intermediate = certificate_authority("issuing CA", issuer=CA)
    leaf = issue(intermediate, spiffe_id=SPIFFE_ID)
    assert isinstance(await pipeline.authenticate(PeerCertificate(_pem(leaf, intermediate))), Principal)
    assert await _refused(pipeline, _pem(leaf)) == reasons.CLIENT_CERTIFICATE_UNTRUSTED


async def test_c10_trust_domains_and_subject_names_follow_the_settings(store: Store) -> None:
    await _register(store, "CN=reporting,O=Example")
    strict = await _pipeline(store, trust_domains=frozenset({"prod.example.org"}))
    assert (
        await _refused(strict, _pem(issue(CA, spiffe_id=SPIFFE_ID))) == reasons.CLIENT_CERTIFICATE_SAN_INVALID
    )
    named = issue(CA, common_name="reporting", organization="Example")
    assert await _refused(strict, _pem(named)) == reasons.CLIENT_CERTIFICATE_SAN_MISSING
    by_subject = await _pipeline(store, subject_names=True)
    assert isinstance(await by_subject.authenticate(PeerCertificate(_pem(named))), Principal)


async def test_c10_deactivation_refuses_at_once_and_reuses_nothing_stale(store: Store) -> None:
    _, credential_id = await _register(store, SPIFFE_ID)
    pipeline = await _pipeline(store)
    pem = _pem(issue(CA, spiffe_id=SPIFFE_ID))
    assert isinstance(await pipeline.authenticate(PeerCertificate(pem)), Principal)
    await store.deactivate_credential(credential_id)
    pipeline.caches.invalidate(*_credential_change(credential_id))
    assert await _refused(pipeline, pem) == reasons.CREDENTIAL_DEACTIVATED


async def test_c10_a_new_identity_is_found_at_once_after_a_cached_miss(store: Store) -> None:
    pipeline = await _pipeline(store)
    pem = _pem(issue(CA, spiffe_id=SPIFFE_ID))
    assert await _refused(pipeline, pem) == reasons.SERVICE_IDENTITY_UNKNOWN
    _, credential_id = await _register(store, SPIFFE_ID)
    pipeline.caches.invalidate(*_credential_change(credential_id, SPIFFE_ID))
    assert isinstance(await pipeline.authenticate(PeerCertificate(pem)), Principal)


def _credential_change(*ids: str) -> tuple[ChangeKind, tuple[str, ...]]:
    return ChangeKind.CREDENTIAL, ids


async def test_c10_without_a_ca_bundle_certificates_are_not_accepted(store: Store) -> None:
    pipeline = Pipeline(store, Catalogue.load(), CERTIFICATES, MASTER)
    pem = _pem(issue(CA, spiffe_id=SPIFFE_ID))
    assert await _refused(pipeline, pem) == reasons.CREDENTIAL_KIND_UNSUPPORTED


# ---- HTTP requests: the connection's certificate, XFCC only when trusted ----


def _xfcc(issued: Issued, by: str = "spiffe://example.org/edge") -> tuple[str, str]:
    return ("x-forwarded-client-cert", f'By={by};Hash=00;Cert="{quote(issued.pem.decode(), safe="")}"')


async def test_c10_an_explicit_credential_wins_over_the_connection_certificate(store: Store) -> None:
    await _register(store, SPIFFE_ID)
    pipeline = await _pipeline(store)
    pem = _pem(issue(CA, spiffe_id=SPIFFE_ID))
    with_token = HttpParts(headers=(("authorization", "Bearer wwak_unknown"),), client_certificate=pem)
    refusal = await pipeline.authenticate(with_token)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == reasons.CREDENTIAL_MALFORMED
    principal = await pipeline.authenticate(HttpParts(headers=(("accept", "*/*"),), client_certificate=pem))
    assert isinstance(principal, Principal)


async def test_c10_a_client_sent_xfcc_is_ignored_unless_trusted(store: Store) -> None:
    await _register(store, SPIFFE_ID)
    forged = _xfcc(issue(CA, spiffe_id=SPIFFE_ID))
    off = await _pipeline(store)
    refusal = await off.authenticate(HttpParts(headers=(forged,)))
    assert isinstance(refusal, Refusal)
    assert refusal.reason == reasons.CREDENTIAL_MISSING
    trusting = TransportSettings(client_certificates=True, xfcc_trusted=True)
    on = await _pipeline(store, trusting)
    assert isinstance(await on.authenticate(HttpParts(headers=(forged,))), Principal)


async def test_c10_xfcc_by_must_name_a_trusted_proxy_and_be_well_formed(store: Store) -> None:
    await _register(store, SPIFFE_ID)
    settings = TransportSettings(
        client_certificates=True, xfcc_trusted=True, xfcc_trusted_by=("spiffe://example.org/edge",)
    )
    pipeline = await _pipeline(store, settings)
    good = _xfcc(issue(CA, spiffe_id=SPIFFE_ID))
    assert isinstance(await pipeline.authenticate(HttpParts(headers=(good,))), Principal)
    cases = {
        reasons.XFCC_UNTRUSTED: _xfcc(issue(CA, spiffe_id=SPIFFE_ID), by="spiffe://example.org/other"),
        reasons.XFCC_MALFORMED: (
            "x-forwarded-client-cert",
            'By=spiffe://example.org/edge;Cert="unterminated',
        ),
    }
    for reason, header in cases.items():
        refusal = await pipeline.authenticate(HttpParts(headers=(header,)))
        assert isinstance(refusal, Refusal)
        assert refusal.reason == reason


async def test_c10_a_bare_identity_counts_only_under_its_setting(store: Store) -> None:
    await _register(store, SPIFFE_ID)
    refusing = await _pipeline(store)
    bare = HttpParts(headers=(("accept", "*/*"),), client_certificate=SPIFFE_ID)
    refusal = await refusing.authenticate(bare)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == reasons.CLIENT_CERTIFICATE_MISSING
    trusting = await _pipeline(store, trust_bare_identity=True)
    assert isinstance(await trusting.authenticate(bare), Principal)


async def test_c10_its_caches_are_registered_for_invalidation(store: Store) -> None:
    pipeline = await _pipeline(store)
    registered = {id(entry.cache) for entry in pipeline.caches}
    assert pipeline.certificates is not None
    for cache in (pipeline.service_identities, pipeline.certificates, pipeline.certificates.checker):
        assert id(cache) in registered


# ---- the ext_authz core (E1/E4): the XFCC header reaches the extractor only when trusted ----


async def test_c10_ext_authz_reads_xfcc_only_when_trusted_and_the_source_certificate_always(
    store: Store,
) -> None:
    organization, _ = await _register(store, SPIFFE_ID, ("organization.get",))
    route = {"method": "GET", "path": "/v1/organizations/{organization_id}", "action": "organization.get"}
    routes = RouteTable.build([RouteSettings.model_validate(route)], Catalogue.load())
    path = f"/v1/organizations/{organization}"
    forged = _xfcc(issue(CA, spiffe_id=SPIFFE_ID))
    trusting = TransportSettings(client_certificates=True, xfcc_trusted=True)
    for transports, allowed in ((CERTIFICATES, False), (trusting, True)):
        core = ExtAuthzCore(await _pipeline(store, transports), routes, transports, ExtAuthzSettings())
        answer = await core.check("GET", path, "", [forged])
        assert isinstance(answer, Allowed if allowed else Denied), (transports, answer)
    core = ExtAuthzCore(await _pipeline(store), routes, CERTIFICATES, ExtAuthzSettings())
    assert core.reads_client_certificates
    pem = _pem(issue(CA, spiffe_id=SPIFFE_ID))
    assert isinstance(await core.check("GET", path, "", [], client_certificate=pem), Allowed)
