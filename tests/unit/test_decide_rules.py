"""Scope rules as pure functions: S2 (application secrets), S3 (grants and event globs), S7, S8."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchword import reasons
from watchword.decide.catalogue import APPLICATION_LEVELS, Catalogue, Level
from watchword.decide.rules import decide
from watchword.domain import CredentialKind, Principal, Resource, Subject, Transport

CATALOGUE = Catalogue.load()
ORG_A, ORG_B = "org-a", "org-b"
APP_A1, APP_A2, APP_B1 = "app-a1", "app-a2", "app-b1"


def app_secret(org: str = ORG_A, app: str = APP_A1) -> Principal:
    return Principal(
        id="cred1",
        kind=CredentialKind.APPLICATION_SECRET,
        transport=Transport.BEARER,
        credential_id="cred1",
        organization_id=org,
        application_id=app,
        permissions=CATALOGUE.actions_at(APPLICATION_LEVELS),
    )


def api_key(
    permissions: set[str],
    allowed: tuple[str, ...] = (),
    denied: tuple[str, ...] = (),
    kind: CredentialKind = CredentialKind.API_KEY,
) -> Principal:
    return Principal(
        id="key1",
        kind=kind,
        transport=Transport.BEARER,
        credential_id="key1",
        organization_id=ORG_A,
        permissions=frozenset(permissions),
        event_types_allowed=allowed,
        event_types_denied=denied,
    )


def on_app(app: str = APP_A1, org: str = ORG_A, event_type: str = "") -> Resource:
    return Resource(organization_id=org, application_id=app, event_type=event_type)


# ---- S2 ----


@pytest.mark.parametrize("action", sorted(CATALOGUE.actions_at(APPLICATION_LEVELS)))
def test_s2_application_secret_reaches_every_application_action_on_its_own_application(action: str) -> None:
    decision = decide(CATALOGUE, app_secret(), action, on_app(event_type="order.created"))
    assert decision.allowed, decision
    assert (decision.reason, decision.rule) == (reasons.ALLOWED, "S2")


@pytest.mark.parametrize("action", ["application.create", "application.list", "organization.get"])
def test_s2_application_secret_never_reaches_organization_actions(action: str) -> None:
    decision = decide(CATALOGUE, app_secret(), action, Resource(organization_id=ORG_A, application_id=APP_A1))
    assert not decision.allowed
    assert (decision.reason, decision.rule) == (reasons.ACTION_LEVEL_NOT_ALLOWED, "S2")


def test_s2_application_secret_cannot_touch_another_application_of_its_organization() -> None:
    decision = decide(CATALOGUE, app_secret(), "event_type.create", on_app(APP_A2))
    assert not decision.allowed
    assert (decision.reason, decision.rule) == (reasons.RESOURCE_NOT_IN_SCOPE, "S2")


@pytest.mark.parametrize("action", ["object.publish", "track"])
def test_s2_application_secret_cannot_reach_object_or_subject_levels(action: str) -> None:
    resource = Resource(
        organization_id=ORG_A, object_id="o1", subject=Subject("user", "u1"), application_id=APP_A1
    )
    decision = decide(CATALOGUE, app_secret(), action, resource)
    assert (decision.allowed, decision.reason) == (False, reasons.ACTION_LEVEL_NOT_ALLOWED)


# ---- S3 ----


@pytest.mark.parametrize("kind", [CredentialKind.API_KEY, CredentialKind.STATIC_TOKEN])
def test_s3_key_reaches_only_its_granted_actions(kind: CredentialKind) -> None:
    key = api_key({"event_type.list", "application.list"}, kind=kind)
    assert decide(CATALOGUE, key, "event_type.list", on_app()).allowed
    assert decide(CATALOGUE, key, "application.list", Resource(organization_id=ORG_A)).allowed
    denied = decide(CATALOGUE, key, "event_type.create", on_app())
    assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.ACTION_NOT_GRANTED, "S3")


def test_s3_event_deny_glob_wins_over_allow_glob() -> None:
    key = api_key({"event.send"}, allowed=("order.*",), denied=("order.refund*",))
    assert decide(CATALOGUE, key, "event.send", on_app(event_type="order.created")).allowed
    denied = decide(CATALOGUE, key, "event.send", on_app(event_type="order.refunded"))
    assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.EVENT_TYPE_DENIED, "S3")


def test_s3_event_not_matching_the_allow_list_is_refused() -> None:
    key = api_key({"event.send"}, allowed=("order.*",))
    denied = decide(CATALOGUE, key, "event.send", on_app(event_type="user.created"))
    assert (denied.allowed, denied.reason) == (False, reasons.EVENT_TYPE_NOT_ALLOWED)


def test_s3_empty_allow_list_allows_every_event_type_not_denied() -> None:
    key = api_key({"event.send"}, denied=("secret.*",))
    assert decide(CATALOGUE, key, "event.send", on_app(event_type="anything.at_all")).allowed
    assert not decide(CATALOGUE, key, "event.send", on_app(event_type="secret.rotated")).allowed


def test_s3_globs_are_case_sensitive_and_do_not_escape() -> None:
    key = api_key({"event.send"}, allowed=("order.*",))
    assert not decide(CATALOGUE, key, "event.send", on_app(event_type="Order.created")).allowed


@pytest.mark.parametrize(
    "event_type",
    [
        "invoice.INTERNAL.audit",  # case: a deny pattern is written for the lowercase name
        "invoice.internal\u200b.audit",  # a zero-width space (Unicode Cf)
        "invoice.internal.audit\n",
        "invoice.internal.*",  # the request itself a glob
        "invoice.intern?l.audit",
        "invoice.[i]nternal.audit",
        "invoice..audit",
        "invoice.internal.\u0430udit",  # Cyrillic a
    ],
)
def test_s3_an_event_type_outside_the_canonical_form_is_refused_before_any_pattern(event_type: str) -> None:
    key = api_key({"event.send"}, denied=("invoice.internal.*",))
    denied = decide(CATALOGUE, key, "event.send", on_app(event_type=event_type))
    assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.EVENT_TYPE_INVALID, "S3")
    # For every principal: an application secret (no patterns at all) is refused the same way.
    assert decide(CATALOGUE, app_secret(), "event.send", on_app(event_type=event_type)).reason == (
        reasons.EVENT_TYPE_INVALID
    )
    assert decide(CATALOGUE, key, "event.send", on_app(event_type="invoice.paid")).allowed


def test_s3_a_deny_pattern_stored_in_another_case_still_denies() -> None:
    key = api_key({"event.send"}, denied=("invoice.INTERNAL.*",))  # from before patterns were checked
    denied = decide(CATALOGUE, key, "event.send", on_app(event_type="invoice.internal.audit"))
    assert (denied.allowed, denied.reason) == (False, reasons.EVENT_TYPE_DENIED)
    allow_only = api_key({"event.send"}, allowed=("Invoice.*",))  # an old allow pattern widens nothing
    assert not decide(CATALOGUE, allow_only, "event.send", on_app(event_type="invoice.paid")).allowed


@pytest.mark.parametrize(
    "object_id", ["truck-1/../secret", "truck-1/x", "truck-1\\x", "truck-..", "truck-1\x07", "truck-\u200b1"]
)
def test_s4_object_ids_with_separators_dot_dot_or_controls_are_refused(object_id: str) -> None:
    token = tenant_token({"object.publish", "object.read"}, ("truck-*",))
    for action in ("object.publish", "object.read"):
        denied = decide(CATALOGUE, token, action, Resource(organization_id=ORG_A, object_id=object_id))
        assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.OBJECT_ID_INVALID, "S4")


def test_s4_a_star_never_crosses_a_separator() -> None:
    from watchword.decide.names import object_matches

    assert object_matches("obj-1", "obj-*")
    assert not object_matches("obj-1/../secret", "obj-*")
    assert not object_matches("obj-1/secret", "obj-*")
    assert object_matches("fleet/truck-1", "fleet/truck-*")
    assert not object_matches("fleet/truck-1/secret", "fleet/*")


# ---- S7 / S8 ----


def test_s7_key_of_organization_a_never_acts_in_organization_b() -> None:
    key = api_key(set(CATALOGUE.actions))
    decision = decide(CATALOGUE, key, "application.list", Resource(organization_id=ORG_B))
    assert (decision.allowed, decision.reason, decision.rule) == (False, reasons.RESOURCE_NOT_IN_SCOPE, "S7")
    assert not decide(CATALOGUE, app_secret(), "event_type.list", on_app(APP_B1, ORG_B)).allowed


def test_s8_unknown_action_is_denied() -> None:
    decision = decide(CATALOGUE, api_key(set(CATALOGUE.actions)), "application.destroy_everything", on_app())
    assert (decision.allowed, decision.reason, decision.rule) == (False, reasons.ACTION_UNKNOWN, "S8")


def test_s8_incomplete_resource_is_denied_with_the_missing_field() -> None:
    decision = decide(CATALOGUE, api_key({"event.send"}), "event.send", on_app(event_type=""))
    assert (decision.allowed, decision.reason) == (False, reasons.RESOURCE_INCOMPLETE)
    assert "event_type" in decision.message


def test_s8_kinds_without_a_rule_are_denied() -> None:
    principal = Principal(
        id="c", kind=CredentialKind.OAUTH_CLIENT, transport=Transport.BASIC, organization_id=ORG_A
    )
    decision = decide(CATALOGUE, principal, "organization.get", Resource(organization_id=ORG_A))
    assert (decision.allowed, decision.reason, decision.rule) == (False, reasons.NO_RULE_ALLOWS, "S8")


def test_s8_every_decision_carries_a_documented_reason_and_a_rule() -> None:
    for action in CATALOGUE.actions:
        for principal in (app_secret(), api_key({"event.send"})):
            decision = decide(CATALOGUE, principal, action, on_app(event_type="x"))
            assert decision.reason in reasons.REASONS
            assert decision.rule in {"S2", "S3", "S7", "S8"}


_ids = st.sampled_from([ORG_A, ORG_B, "org-c"])


@settings(max_examples=400, deadline=None)
@given(
    principal_org=_ids,
    resource_org=_ids,
    action=st.sampled_from(sorted(CATALOGUE.actions)),
    kind=st.sampled_from(
        [CredentialKind.APPLICATION_SECRET, CredentialKind.API_KEY, CredentialKind.STATIC_TOKEN]
    ),
    permissions=st.sets(st.sampled_from(sorted(CATALOGUE.actions))),
    event_type=st.sampled_from(["", "order.created", "x"]),
)
def test_s7_no_decision_ever_allows_across_organizations(
    principal_org: str,
    resource_org: str,
    action: str,
    kind: CredentialKind,
    permissions: set[str],
    event_type: str,
) -> None:
    principal = Principal(
        id="p",
        kind=kind,
        transport=Transport.BEARER,
        organization_id=principal_org,
        application_id="app" if kind is CredentialKind.APPLICATION_SECRET else "",
        permissions=frozenset(permissions),
    )
    resource = Resource(
        organization_id=resource_org,
        application_id="app",
        event_type=event_type,
        object_id="o",
        subject=Subject("user", "u"),
    )
    decision = decide(CATALOGUE, principal, action, resource)
    if decision.allowed:
        assert principal_org == resource_org
        level = CATALOGUE.actions[action].level
        if kind is CredentialKind.APPLICATION_SECRET:
            assert level in APPLICATION_LEVELS
        else:
            assert action in permissions
        assert level is not Level.EVENT_TYPE or event_type


# ---- S1 ----


def user(*memberships: tuple[str, tuple[str, ...]]) -> Principal:
    return Principal(
        id="user-1", kind=CredentialKind.EXTERNAL_JWT, transport=Transport.BEARER, memberships=memberships
    )


def test_s1_user_acts_with_the_actions_of_their_role_in_that_organization() -> None:
    viewer = user((ORG_A, ("viewer",)))
    assert decide(CATALOGUE, viewer, "application.list", Resource(organization_id=ORG_A)).rule == "S1"
    assert decide(CATALOGUE, viewer, "application.list", Resource(organization_id=ORG_A)).allowed
    denied = decide(CATALOGUE, viewer, "application.create", Resource(organization_id=ORG_A))
    assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.ROLE_NOT_GRANTED, "S1")


def test_s1_user_without_a_role_in_the_organization_is_not_a_member() -> None:
    admin_of_a = user((ORG_A, ("admin",)))
    denied = decide(CATALOGUE, admin_of_a, "application.list", Resource(organization_id=ORG_B))
    assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.NOT_A_MEMBER, "S1")


def test_s1_roles_the_catalogue_does_not_know_grant_nothing() -> None:
    keycloak = user((ORG_A, ("offline_access", "default-roles-hook0", "uma_authorization")))
    denied = decide(CATALOGUE, keycloak, "organization.get", Resource(organization_id=ORG_A))
    assert (denied.allowed, denied.reason) == (False, reasons.ROLE_NOT_GRANTED)


# ---- S4 ----


def tenant_token(permissions: set[str], patterns: tuple[str, ...]) -> Principal:
    return Principal(
        id="svc",
        kind=CredentialKind.TENANT_JWT,
        transport=Transport.BEARER,
        credential_id="secret1",
        organization_id=ORG_A,
        permissions=frozenset(permissions),
        data_provider_patterns=patterns,
    )


def test_s4_tenant_token_publishes_only_for_objects_its_patterns_name() -> None:
    token = tenant_token({"object.publish", "object.read"}, ("truck-*", "van-7"))
    on = lambda object_id: Resource(organization_id=ORG_A, object_id=object_id)  # noqa: E731
    assert decide(CATALOGUE, token, "object.publish", on("truck-12")).allowed
    assert decide(CATALOGUE, token, "object.publish", on("van-7")).allowed
    denied = decide(CATALOGUE, token, "object.publish", on("car-1"))
    assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.OBJECT_NOT_IN_PATTERNS, "S4")
    assert decide(CATALOGUE, token, "object.read", on("car-1")).allowed, "patterns bound publishing only"


def test_s4_tenant_token_without_patterns_publishes_nothing() -> None:
    token = tenant_token({"object.publish"}, ())
    denied = decide(CATALOGUE, token, "object.publish", Resource(organization_id=ORG_A, object_id="x"))
    assert denied.reason == reasons.OBJECT_NOT_IN_PATTERNS


def test_s4_tenant_token_reaches_only_its_capped_permissions() -> None:
    token = tenant_token({"object.read"}, ("*",))
    denied = decide(CATALOGUE, token, "object.publish", Resource(organization_id=ORG_A, object_id="x"))
    assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.ACTION_NOT_GRANTED, "S4")


# ---- S5 ----


def subject_token(subject: Subject) -> Principal:
    return Principal(
        id=f"{subject.type}:{subject.id}",
        kind=CredentialKind.SUBJECT_JWT,
        transport=Transport.HEADER_PAIR,
        credential_id="conn1",
        organization_id=ORG_A,
        subject=subject,
        permissions=frozenset({"track", "traits", "alias"}),
    )


@pytest.mark.parametrize("action", ["track", "traits", "alias"])
def test_s5_subject_token_acts_on_its_own_subject(action: str) -> None:
    me = Subject("user", "u-1")
    decision = decide(CATALOGUE, subject_token(me), action, Resource(organization_id=ORG_A, subject=me))
    assert (decision.allowed, decision.rule) == (True, "S5")


def test_s5_subject_token_never_acts_on_another_subject() -> None:
    token = subject_token(Subject("user", "u-1"))
    for other in (Subject("user", "u-2"), Subject("account", "u-1")):
        denied = decide(CATALOGUE, token, "track", Resource(organization_id=ORG_A, subject=other))
        assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.SUBJECT_MISMATCH, "S5")


@pytest.mark.parametrize("action", ["event.send", "application.list", "object.publish"])
def test_s5_subject_token_may_only_track_set_traits_and_alias(action: str) -> None:
    token = subject_token(Subject("user", "u-1"))
    resource = Resource(
        organization_id=ORG_A,
        application_id=APP_A1,
        event_type="e",
        object_id="o",
        subject=Subject("user", "u-1"),
    )
    denied = decide(CATALOGUE, token, action, resource)
    assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.ACTION_LEVEL_NOT_ALLOWED, "S5")
