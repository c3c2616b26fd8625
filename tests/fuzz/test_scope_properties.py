"""Scope rules as properties (issue 4, "Proof"): random organizations, applications, credentials of every
kind with random grants, and random requests. Whatever hypothesis draws:

(a) S7: no decision allows anything across organizations;
(b) every allow is justified by a grant the principal holds;
(c) S8: every decision names a documented reason and one of the rules S1-S8;
(d) narrowing a principal's grants never widens what it may do.

The oracle below states what the catalogue says each kind may do; it is a specification to check the
rules against, not a copy of rules.py (which it never imports beyond `decide`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, Phase, event, find, given, settings
from hypothesis import strategies as st

from watchword import reasons
from watchword.decide.catalogue import Catalogue, Level
from watchword.decide.rules import decide
from watchword.domain import CredentialKind, Decision, Principal, Resource, Subject, Transport

CATALOGUE = Catalogue.load()
ACTIONS = sorted(CATALOGUE.actions)
CATALOGUE_ROLES = frozenset(CATALOGUE.roles)
RULES = {f"S{n}" for n in range(1, 9)}
SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ORGANIZATIONS = ("org-a", "org-b", "org-c")
# Ids a principal or a request may name that no generated organization or application has.
UNKNOWN_ORG, UNKNOWN_APP = "org-unknown", "app-unknown"
# What each action level needs the resource to name (the catalogue's own comment says the same).
LEVEL_FIELDS = {
    Level.ORGANIZATION: ("organization_id",),
    Level.APPLICATION: ("application_id",),
    Level.EVENT_TYPE: ("application_id", "event_type"),
    Level.OBJECT: ("organization_id", "object_id"),
    Level.SUBJECT: ("organization_id", "subject"),
}
# The rule that must have allowed, per kind; kinds not named here are never allowed anything (S8).
ALLOWING_RULE = {
    CredentialKind.EXTERNAL_JWT: "S1",
    CredentialKind.APPLICATION_SECRET: "S2",
    CredentialKind.STATIC_TOKEN: "S3",
    CredentialKind.API_KEY: "S3",
    CredentialKind.CONNECTOR: "S3",
    CredentialKind.WATCHWORD_TOKEN: "S3",
    CredentialKind.CLIENT_CERTIFICATE: "S3",  # C10: a service identity's grants
    CredentialKind.TENANT_JWT: "S4",
    CredentialKind.SUBJECT_JWT: "S5",
}
SUBJECT_ACTIONS = {"track", "traits", "alias"}
_EVENT_ACTIONS = ["event.send", "event.list"]
# Per kind, the actions whose rule looks further than the grant (application, globs, patterns, subject).
EDGE_ACTIONS = {
    CredentialKind.APPLICATION_SECRET: sorted(CATALOGUE.actions_at(frozenset({Level.APPLICATION}))),
    CredentialKind.STATIC_TOKEN: _EVENT_ACTIONS,
    CredentialKind.API_KEY: _EVENT_ACTIONS,
    CredentialKind.CONNECTOR: _EVENT_ACTIONS,
    CredentialKind.WATCHWORD_TOKEN: _EVENT_ACTIONS,
    CredentialKind.CLIENT_CERTIFICATE: _EVENT_ACTIONS,
    CredentialKind.TENANT_JWT: ["object.publish"],
    CredentialKind.SUBJECT_JWT: sorted(SUBJECT_ACTIONS),
}
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    organizations: tuple[str, ...]
    applications: dict[str, str]  # application id -> its organization


@dataclass(frozen=True)
class Case:
    world: World
    principal: Principal
    action: str
    resource: Resource  # as the caller sent it, before resolution


SUBJECTS = tuple(Subject(kind, id) for kind in ("user", "account") for id in ("u-1", "u-2", "acct-7"))
# Strategies that do not depend on the world are built once: building them per draw is most of the cost.
globs = st.sampled_from(("order.*", "order.internal.*", "*.internal.*", "user.created", "*", "Order.*"))
object_globs = st.sampled_from(("truck-*", "van-7", "car-?", "[tv]*", "*"))
maybe_subject = st.sampled_from((None, *SUBJECTS))
any_action = st.sampled_from((*ACTIONS, "unknown.action", "organization.destroy"))
event_types = st.sampled_from(("order.created", "order.internal.audit", "user.created", "Order.created", ""))
object_ids = st.sampled_from(("truck-12", "van-7", "car-1", ""))
roles = st.lists(
    st.sampled_from((*sorted(CATALOGUE_ROLES), "offline_access", "uma_authorization")),
    max_size=3,
    unique=True,
).map(tuple)
granted = st.frozensets(st.sampled_from((*ACTIONS, "unknown.action")), max_size=6)
kinds = st.sampled_from(tuple(CredentialKind))
transports = st.sampled_from(tuple(Transport))
tenths = st.sampled_from(range(10))  # uniform: integers() favours the bounds


def _pick(draw: st.DrawFn, items: Iterable[T]) -> T:
    return draw(st.sampled_from(tuple(items)))  # a tuple, so hypothesis can cache the strategy


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """Two or three organizations and one to five applications, each in a random one of them (so an
    organization may have none)."""
    organizations = ORGANIZATIONS[: _pick(draw, (2, 3))]
    owners = draw(st.lists(st.sampled_from(organizations), min_size=1, max_size=5))
    return World(organizations, {f"app-{n}": owner for n, owner in enumerate(owners)})


def _often(draw: st.DrawFn, preferred: T, otherwise: Iterable[T]) -> T:
    """`preferred` about half the time, else any of `otherwise`: requests near the edge of what a
    principal holds are where a wrong rule would show; fully random ones are nearly all denied early."""
    return preferred if draw(st.booleans()) else _pick(draw, otherwise)


@st.composite
def cases(draw: st.DrawFn, kind: CredentialKind | None = None) -> Case:
    world = draw(worlds())
    organizations = (*world.organizations, UNKNOWN_ORG, "")
    applications = (*world.applications, UNKNOWN_APP, "")
    kind = kind or draw(kinds)
    # Half the time one of the kind's edge actions.
    action = draw(any_action) if draw(st.booleans()) else _pick(draw, EDGE_ACTIONS.get(kind, ACTIONS))
    # The request as the caller sends it: an application may come with its organization, without one,
    # or (rarely) with another organization than its own; rarely an application nobody has.
    roll = draw(tenths)
    application_id = UNKNOWN_APP if roll == 0 else "" if roll < 4 else _pick(draw, world.applications)
    owner = world.applications.get(application_id, "")
    named_org = _pick(draw, organizations)
    resource = Resource(
        organization_id=_pick(draw, (owner, owner, "", named_org)) if owner else named_org,
        application_id=application_id,
        event_type=draw(event_types),
        object_id=draw(object_ids),
        subject=draw(maybe_subject),
    )
    # The principal: every field drawn for every kind, consistent or not (the rules must hold whatever
    # identify built), each often close to the request.
    target_org = owner or resource.organization_id
    catalogue_action = CATALOGUE.get(action)
    memberships = draw(st.lists(st.tuples(st.sampled_from(organizations), roles), max_size=3))
    if catalogue_action and draw(st.booleans()):
        memberships.insert(
            _pick(draw, range(len(memberships) + 1)),
            (target_org, (_pick(draw, sorted(catalogue_action.roles)),)),
        )
    permissions = draw(granted) | ({action} if draw(st.booleans()) else set())
    principal = Principal(
        id="p",
        kind=kind,
        transport=draw(transports),
        organization_id=_often(draw, target_org, organizations),
        application_id=_often(draw, application_id, applications),
        subject=_often(draw, resource.subject, (None, *SUBJECTS)),
        permissions=permissions,
        memberships=tuple(memberships),
        data_provider_patterns=tuple(draw(st.lists(object_globs, max_size=3))),
        event_types_allowed=tuple(draw(st.lists(globs, max_size=3))),
        event_types_denied=tuple(draw(st.lists(globs, max_size=2))),
    )
    return Case(world, principal, action, resource)


def resolved(case: Case) -> Resource | None:
    """What the pipeline does before deciding: an application's organization comes from the store, and
    an unknown application, or one of another organization than the one named, is refused (S7) there."""
    resource = case.resource
    if not resource.application_id:
        return resource
    organization = case.world.applications.get(resource.application_id)
    if organization is None or resource.organization_id not in ("", organization):
        return None
    return replace(resource, organization_id=organization)


def decided(case: Case) -> tuple[Resource, Decision] | None:
    resource = resolved(case)
    if resource is None:
        return None
    return resource, decide(CATALOGUE, case.principal, case.action, resource)


def _glob_allows(event_type: str, allowed: tuple[str, ...], denied: tuple[str, ...]) -> bool:
    # docs/reference/actions.md: deny wins; an empty allow list allows every event type.
    if any(fnmatchcase(event_type, pattern) for pattern in denied):
        return False
    return not allowed or any(fnmatchcase(event_type, pattern) for pattern in allowed)


def assert_justified(principal: Principal, action_name: str, resource: Resource, decision: Decision) -> None:
    """(a) and (b) for one allowed decision."""
    action = CATALOGUE.get(action_name)
    assert action is not None, "an unknown action was allowed"
    assert all(getattr(resource, field) for field in LEVEL_FIELDS[action.level]), "incomplete resource"
    organization = resource.organization_id
    assert organization, "allowed without knowing the resource's organization"
    kind = principal.kind
    assert decision.rule == ALLOWING_RULE.get(kind), f"{kind.name} allowed by {decision.rule}"
    if kind is CredentialKind.EXTERNAL_JWT:
        roles_here = {role for org, roles in principal.memberships if org == organization for role in roles}
        # (a) S1/S7: a catalogue role in the resource's organization, whatever organization_id says;
        # (b) one of those roles grants the action.
        assert roles_here & CATALOGUE_ROLES, "a user acted in an organization where they hold no role"
        assert roles_here & action.roles, "none of the user's roles there grants the action"
        return
    # (a) S7: every other kind belongs to exactly one organization.
    assert principal.organization_id == organization, "allowed across organizations"
    if kind is CredentialKind.APPLICATION_SECRET:
        assert action.level in (Level.APPLICATION, Level.EVENT_TYPE), "S2 beyond application level"
        assert resource.application_id == principal.application_id, "S2 on another application"
    elif kind is CredentialKind.SUBJECT_JWT:
        assert action_name in SUBJECT_ACTIONS & principal.permissions, "S5 beyond track/traits/alias"
        assert resource.subject == principal.subject, "S5 on another subject"
    else:
        assert action_name in principal.permissions, "allowed an action that was never granted"
        if kind is CredentialKind.TENANT_JWT and action_name == "object.publish":
            assert any(fnmatchcase(resource.object_id, p) for p in principal.data_provider_patterns)
        if kind is not CredentialKind.TENANT_JWT and action.level is Level.EVENT_TYPE:
            assert _glob_allows(
                resource.event_type, principal.event_types_allowed, principal.event_types_denied
            ), "S3 event type outside the allow/deny lists"


@pytest.mark.parametrize("kind", list(CredentialKind), ids=lambda kind: f"{int(kind)}-{kind.name}")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_s7_s8_every_allow_is_justified_and_never_crosses_organizations(
    kind: CredentialKind, data: st.DataObject
) -> None:
    case = data.draw(cases(kind))
    outcome = decided(case)
    if outcome is None:
        event("refused before deciding (unknown application)")
        return
    resource, decision = outcome
    event(f"{case.principal.kind.name}: {decision.reason}")
    # (c) S8: a documented reason and a rule, always; allowed exactly when the reason says so.
    assert decision.reason in reasons.REASONS
    assert decision.rule in RULES
    assert decision.allowed == (decision.reason == reasons.ALLOWED)
    assert decision.message
    if decision.allowed:
        assert_justified(case.principal, case.action, resource, decision)


@st.composite
def narrowed(draw: st.DrawFn, principal: Principal) -> Principal:
    """The same principal holding less: fewer permissions, roles and data-provider patterns, more deny
    patterns. (Fewer *allow* patterns is not narrower: an empty allow list means every event type.)"""

    def some(items: Iterable[str]) -> list[str]:
        choices = sorted(set(items))
        return draw(st.lists(st.sampled_from(choices), unique=True)) if choices else []

    return replace(
        principal,
        permissions=frozenset(some(principal.permissions)),
        memberships=tuple((org, tuple(some(roles))) for org, roles in principal.memberships),
        data_provider_patterns=tuple(some(principal.data_provider_patterns)),
        event_types_denied=principal.event_types_denied + tuple(draw(st.lists(globs, max_size=2))),
    )


@SETTINGS
@given(st.data())
def test_s3_narrowing_a_principal_never_widens_what_it_may_do(data: st.DataObject) -> None:
    case = data.draw(cases())
    outcome = decided(case)
    if outcome is None:
        return
    resource, original = outcome
    smaller = data.draw(narrowed(case.principal))
    if decide(CATALOGUE, smaller, case.action, resource).allowed:
        assert original.allowed, "a principal holding less was allowed what the original was not"


@SETTINGS
@given(cases(), st.sampled_from([*ORGANIZATIONS, UNKNOWN_ORG]))
def test_s7_the_same_request_in_another_organization_is_denied(case: Case, elsewhere: str) -> None:
    """Move an allowed request to another organization (an organization-, object- or subject-level
    resource there): denied, unless the principal is a user holding a role there too."""
    outcome = decided(case)
    if outcome is None or not outcome[1].allowed:
        return
    resource, _ = outcome
    if elsewhere == resource.organization_id or CATALOGUE.actions[case.action].level in (
        Level.APPLICATION,
        Level.EVENT_TYPE,
    ):
        return  # application-level resources move with their application: the first property covers it
    moved = replace(resource, organization_id=elsewhere, application_id="")
    decision = decide(CATALOGUE, case.principal, case.action, moved)
    member_there = any(
        org == elsewhere and set(roles) & CATALOGUE_ROLES for org, roles in case.principal.memberships
    )
    if case.principal.kind is not CredentialKind.EXTERNAL_JWT or not member_there:
        assert not decision.allowed, decision


@pytest.mark.parametrize("kind", sorted(ALLOWING_RULE, key=int), ids=lambda kind: f"C{int(kind)}")
def test_the_generators_reach_an_allow_for_every_kind_a_rule_serves(kind: CredentialKind) -> None:
    """The properties above are not vacuous: for each kind a rule serves, the strategies can draw a
    request that is allowed."""
    found = find(
        cases(kind),
        lambda case: (outcome := decided(case)) is not None and outcome[1].allowed,
        settings=settings(max_examples=1000, deadline=None, database=None, phases=[Phase.generate]),
    )
    assert found.principal.kind is kind
