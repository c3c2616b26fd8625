"""One real path, end to end through the real server and the generated stubs:
C2 application secrets and C5 API keys sent as T1 Bearer (and T6 bare), decided by S2/S3, S6-S8."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from watchword import reasons
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.tenants import API_KEY, APPLICATION_SECRET, STATIC_TOKEN, create_credential, make_tenant

TIMEOUT = 10


def bearer(token: str) -> common_pb2.CredentialSource:
    return common_pb2.CredentialSource(
        http=common_pb2.HttpRequest(
            method="POST",
            path="/v1/event_types",
            headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")],
        )
    )


def authenticate(server, source: common_pb2.CredentialSource) -> auth_pb2.AuthenticateResponse:
    return server.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=source), timeout=TIMEOUT)


def authorize(server, token: str, action: str, **resource: str) -> auth_pb2.AuthorizeResponse:
    request = auth_pb2.AuthorizeRequest(
        credential=bearer(token), action=action, resource=auth_pb2.Resource(**resource)
    )
    return server.auth().Authorize(request, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def tenant(server):
    return make_tenant(server, "acme")


@pytest.fixture(scope="module")
def other_tenant(server):
    return make_tenant(server, "globex")


@pytest.fixture(scope="module")
def app_secret(server, tenant):
    return create_credential(
        server,
        kind=APPLICATION_SECRET,
        organization_id=tenant.organization_id,
        application_id=tenant.application_id,
        name="ci",
    )


@pytest.fixture(scope="module")
def api_key(server, tenant):
    return create_credential(
        server,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="events",
        permissions=["event.send", "application.list", "event_type.list"],
        event_types_allowed=["order.*"],
        event_types_denied=["order.internal.*"],
    )


def test_c2_t1_application_secret_authenticates_with_its_application(server, tenant, app_secret) -> None:
    response = authenticate(server, bearer(app_secret.secret))
    assert response.WhichOneof("result") == "principal"
    principal = response.principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET
    assert principal.credential_id == app_secret.credential.id
    assert principal.organization_id == tenant.organization_id
    assert principal.application_id == tenant.application_id
    assert principal.transport == common_pb2.TRANSPORT_BEARER
    assert "event_type.create" in principal.permissions
    assert "application.create" not in principal.permissions
    assert not principal.discouraged_transport


def test_c5_t1_api_key_authenticates_with_its_permissions(server, tenant, api_key) -> None:
    principal = authenticate(server, bearer(api_key.secret)).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_API_KEY
    assert principal.organization_id == tenant.organization_id
    assert principal.application_id == ""
    assert sorted(principal.permissions) == ["application.list", "event.send", "event_type.list"]
    assert list(principal.event_types_allowed) == ["order.*"]
    assert list(principal.event_types_denied) == ["order.internal.*"]


def test_t6_bare_token_authenticates_like_bearer(server, app_secret) -> None:
    source = common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=app_secret.secret))
    principal = authenticate(server, source).principal
    assert principal.transport == common_pb2.TRANSPORT_BARE
    assert principal.credential_id == app_secret.credential.id


def test_c3_t1_static_token_authenticates(server, tenant) -> None:
    created = create_credential(
        server,
        kind=STATIC_TOKEN,
        organization_id=tenant.organization_id,
        name="backend",
        permissions=["object.publish"],
    )
    principal = authenticate(server, bearer(created.secret)).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_STATIC_TOKEN
    assert list(principal.permissions) == ["object.publish"]


def test_s2_application_secret_on_its_own_application(server, tenant, app_secret) -> None:
    response = authorize(server, app_secret.secret, "event_type.create", application_id=tenant.application_id)
    assert response.decision.allowed
    assert (response.decision.reason, response.decision.rule) == (reasons.ALLOWED, "S2")
    assert response.principal.credential_id == app_secret.credential.id


def test_s2_application_secret_cannot_create_or_list_applications(server, tenant, app_secret) -> None:
    for action in ("application.create", "application.list"):
        decision = authorize(
            server, app_secret.secret, action, organization_id=tenant.organization_id
        ).decision
        assert not decision.allowed
        assert (decision.reason, decision.rule) == (reasons.ACTION_LEVEL_NOT_ALLOWED, "S2")


def test_s2_application_secret_cannot_reach_a_sibling_application(server, tenant, app_secret) -> None:
    decision = authorize(
        server, app_secret.secret, "subscription.list", application_id=tenant.other_application_id
    ).decision
    assert (decision.allowed, decision.reason) == (False, reasons.RESOURCE_NOT_IN_SCOPE)


def test_s3_api_key_granted_and_ungranted_actions(server, tenant, api_key) -> None:
    allowed = authorize(
        server, api_key.secret, "event.send", application_id=tenant.application_id, event_type="order.created"
    )
    assert allowed.decision.allowed
    assert allowed.decision.rule == "S3"
    listed = authorize(server, api_key.secret, "application.list", organization_id=tenant.organization_id)
    assert listed.decision.allowed
    refused = authorize(server, api_key.secret, "application.create", organization_id=tenant.organization_id)
    assert (refused.decision.allowed, refused.decision.reason) == (False, reasons.ACTION_NOT_GRANTED)


def test_s3_api_key_event_filters_deny_wins(server, tenant, api_key) -> None:
    denied = authorize(
        server,
        api_key.secret,
        "event.send",
        application_id=tenant.application_id,
        event_type="order.internal.audit",
    )
    assert (denied.decision.allowed, denied.decision.reason) == (False, reasons.EVENT_TYPE_DENIED)
    outside = authorize(
        server, api_key.secret, "event.send", application_id=tenant.application_id, event_type="user.created"
    )
    assert (outside.decision.allowed, outside.decision.reason) == (False, reasons.EVENT_TYPE_NOT_ALLOWED)


def test_s7_nothing_of_one_organization_reaches_another(
    server, tenant, other_tenant, app_secret, api_key
) -> None:
    cases = [
        (app_secret.secret, "event_type.create", {"application_id": other_tenant.application_id}),
        (api_key.secret, "application.list", {"organization_id": other_tenant.organization_id}),
        (
            api_key.secret,
            "event.send",
            {"application_id": other_tenant.application_id, "event_type": "order.created"},
        ),
        # Naming our own organization with their application must not help.
        (
            api_key.secret,
            "event_type.list",
            {"organization_id": tenant.organization_id, "application_id": other_tenant.application_id},
        ),
        # An application that does not exist looks exactly like one of another organization.
        (api_key.secret, "event_type.list", {"application_id": "00000000-0000-0000-0000-000000000000"}),
    ]
    for token, action, resource in cases:
        decision = authorize(server, token, action, **resource).decision
        assert (decision.allowed, decision.reason, decision.rule) == (
            False,
            reasons.RESOURCE_NOT_IN_SCOPE,
            "S7",
        ), resource


def test_s8_unauthenticated_requests_are_denied_with_the_refusal(server, tenant) -> None:
    response = server.auth().Authorize(
        auth_pb2.AuthorizeRequest(
            credential=common_pb2.CredentialSource(http=common_pb2.HttpRequest(method="GET", path="/")),
            action="application.list",
            resource=auth_pb2.Resource(organization_id=tenant.organization_id),
        ),
        timeout=TIMEOUT,
    )
    assert not response.decision.allowed
    assert response.decision.reason == reasons.NOT_AUTHENTICATED
    assert response.refusal.reason == reasons.CREDENTIAL_MISSING
    assert response.refusal.www_authenticate.startswith("Bearer")
    assert not response.HasField("principal")


def test_refusals_have_distinct_reasons_for_unknown_malformed_deactivated_expired(server, tenant) -> None:
    key = create_credential(server, kind=API_KEY, organization_id=tenant.organization_id, name="short-lived")
    # Malformed: fails the checksum, costs no store query.
    tampered = key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B")
    assert authenticate(server, bearer(tampered)).refusal.reason == reasons.CREDENTIAL_MALFORMED
    assert (
        authenticate(server, bearer("not-a-watchword-secret")).refusal.reason == reasons.CREDENTIAL_MALFORMED
    )
    # Unknown: well-formed, but no such credential.
    from watchword import secret_format
    from watchword.domain import CredentialKind

    stranger = secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())
    assert authenticate(server, bearer(stranger)).refusal.reason == reasons.CREDENTIAL_UNKNOWN
    # Right id, wrong secret: indistinguishable from unknown.
    forged = secret_format.mint(CredentialKind.API_KEY, key.credential.id)
    assert authenticate(server, bearer(forged)).refusal.reason == reasons.CREDENTIAL_UNKNOWN
    # An id of another kind of credential with this prefix: unknown as well.
    wrong_kind = secret_format.mint(CredentialKind.STATIC_TOKEN, key.credential.id)
    assert authenticate(server, bearer(wrong_kind)).refusal.reason == reasons.CREDENTIAL_UNKNOWN
    # Admin tokens are not API credentials.
    assert (
        authenticate(server, bearer(server.admin_token)).refusal.reason == reasons.CREDENTIAL_KIND_UNSUPPORTED
    )


def test_s6_deactivation_is_refused_on_the_very_next_call(server, tenant) -> None:
    key = create_credential(
        server,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="leaked",
        permissions=["application.list"],
    )
    assert authenticate(server, bearer(key.secret)).WhichOneof("result") == "principal"
    server.admin().DeactivateCredential(
        admin_pb2.DeactivateCredentialRequest(id=key.credential.id), metadata=server.admin_metadata
    )
    assert authenticate(server, bearer(key.secret)).refusal.reason == reasons.CREDENTIAL_DEACTIVATED
    decision = authorize(server, key.secret, "application.list", organization_id=tenant.organization_id)
    assert (decision.decision.allowed, decision.refusal.reason) == (False, reasons.CREDENTIAL_DEACTIVATED)


def test_s6_expired_credentials_are_refused(server, tenant) -> None:
    expires = Timestamp()
    expires.FromDatetime(datetime.now(UTC) + timedelta(seconds=1.5))
    key = create_credential(
        server, kind=API_KEY, organization_id=tenant.organization_id, name="brief", expires_at=expires
    )
    assert authenticate(server, bearer(key.secret)).principal.expires_at == expires
    time.sleep(2)
    assert authenticate(server, bearer(key.secret)).refusal.reason == reasons.CREDENTIAL_EXPIRED


def test_rotation_shows_a_new_secret_once_and_honours_the_overlap(server, tenant) -> None:
    admin, md = server.admin(), server.admin_metadata
    key = create_credential(server, kind=API_KEY, organization_id=tenant.organization_id, name="rotating")
    with_overlap = admin.RotateCredential(
        admin_pb2.RotateCredentialRequest(id=key.credential.id, overlap_seconds=600), metadata=md
    )
    assert with_overlap.secret != key.secret
    assert authenticate(server, bearer(key.secret)).WhichOneof("result") == "principal"
    assert authenticate(server, bearer(with_overlap.secret)).WhichOneof("result") == "principal"
    immediate = admin.RotateCredential(admin_pb2.RotateCredentialRequest(id=key.credential.id), metadata=md)
    assert authenticate(server, bearer(with_overlap.secret)).refusal.reason == reasons.CREDENTIAL_UNKNOWN
    assert authenticate(server, bearer(immediate.secret)).WhichOneof("result") == "principal"


def test_i4_secrets_are_shown_once_and_stored_only_as_hashes(server, tenant, app_secret, api_key) -> None:
    admin, md = server.admin(), server.admin_metadata
    fetched = admin.GetCredential(admin_pb2.GetCredentialRequest(id=api_key.credential.id), metadata=md)
    listed = admin.ListCredentials(
        admin_pb2.ListCredentialsRequest(organization_id=tenant.organization_id), metadata=md
    )
    for message in (fetched, listed):
        serialized = message.SerializeToString()
        assert api_key.secret.encode() not in serialized
        assert app_secret.secret.encode() not in serialized
    assert fetched.secret_hint == api_key.secret[:21]
    with sqlite3.connect(server.data_dir / "watchword.db") as connection:
        dump = "\n".join(connection.iterdump())
    for secret in (api_key.secret, app_secret.secret, server.admin_token):
        assert secret not in dump


def test_admin_service_refuses_calls_without_a_valid_admin_token(server) -> None:
    request = admin_pb2.ListOrganizationsRequest()
    for metadata in ((), (("authorization", "Bearer wwad_nope"),), (("authorization", "Basic abc"),)):
        with pytest.raises(grpc.RpcError) as caught:
            server.admin().ListOrganizations(request, metadata=metadata, timeout=TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_deactivated_admin_token_stops_working(server) -> None:
    admin, md = server.admin(), server.admin_metadata
    second = admin.CreateCredential(
        admin_pb2.CreateCredentialRequest(kind=common_pb2.CREDENTIAL_KIND_ADMIN_TOKEN, name="ops"),
        metadata=md,
    )
    own = (("authorization", f"Bearer {second.secret}"),)
    assert admin.ListOrganizations(admin_pb2.ListOrganizationsRequest(), metadata=own, timeout=TIMEOUT)
    admin.DeactivateCredential(admin_pb2.DeactivateCredentialRequest(id=second.credential.id), metadata=md)
    with pytest.raises(grpc.RpcError) as caught:
        admin.ListOrganizations(admin_pb2.ListOrganizationsRequest(), metadata=own, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_t7_batch_decides_each_entry_with_its_own_credential(server, tenant, app_secret, api_key) -> None:
    entries = [
        auth_pb2.AuthorizeRequest(
            credential=bearer(app_secret.secret),
            action="event_type.create",
            resource=auth_pb2.Resource(application_id=tenant.application_id),
        ),
        auth_pb2.AuthorizeRequest(
            credential=bearer(api_key.secret),
            action="application.create",
            resource=auth_pb2.Resource(organization_id=tenant.organization_id),
        ),
        auth_pb2.AuthorizeRequest(
            credential=bearer("garbage"),
            action="application.list",
            resource=auth_pb2.Resource(organization_id=tenant.organization_id),
        ),
    ]
    results = (
        server.auth().AuthorizeBatch(auth_pb2.AuthorizeBatchRequest(entries=entries), timeout=TIMEOUT).results
    )
    assert [r.decision.allowed for r in results] == [True, False, False]
    assert [r.decision.reason for r in results] == [
        reasons.ALLOWED,
        reasons.ACTION_NOT_GRANTED,
        reasons.NOT_AUTHENTICATED,
    ]
    assert results[2].refusal.reason == reasons.CREDENTIAL_MALFORMED
