"""The scope rules S1-S8: (principal, action, resource) -> Decision. Pure: no I/O, no gRPC.

The caller resolves the resource first (an application's organization comes from the store), so every
rule here sees a resource whose organization is the true one. Deny by default (S8): only a rule that
positively matches allows, and every decision names its reason and the rule that decided.
"""

from __future__ import annotations

from collections.abc import Callable

from watchword import reasons
from watchword.decide import names
from watchword.decide.catalogue import APPLICATION_LEVELS, Action, Catalogue, Level
from watchword.domain import SUBJECT_ACTIONS, CredentialKind, Decision, Principal, Resource

# Credentials whose reach is their own list of granted actions (S3; connectors and Watchword's own tokens
# carry such a list too: a connector's grants, a token's scope; so do C10 service identities).
GRANT_LIST_KINDS = frozenset(
    {
        CredentialKind.API_KEY,
        CredentialKind.STATIC_TOKEN,
        CredentialKind.CONNECTOR,
        CredentialKind.WATCHWORD_TOKEN,
        CredentialKind.CLIENT_CERTIFICATE,
    }
)


def _deny(reason: str, rule: str, message: str) -> Decision:
    return Decision(allowed=False, reason=reason, rule=rule, message=message)


def _allow(rule: str, message: str) -> Decision:
    return Decision(allowed=True, reason=reasons.ALLOWED, rule=rule, message=message)


# The resource fields each action level needs.
_NEEDED: dict[Level, tuple[str, ...]] = {
    Level.ORGANIZATION: ("organization_id",),
    Level.APPLICATION: ("application_id",),
    Level.EVENT_TYPE: ("application_id", "event_type"),
    Level.OBJECT: ("organization_id", "object_id"),
    Level.SUBJECT: ("organization_id", "subject"),
}


def missing_resource_field(action: Action, resource: Resource) -> str | None:
    """The first resource field the action's level needs that is empty, or None."""
    for name in _NEEDED[action.level]:
        if not getattr(resource, name):
            return name
    return None


def malformed_name(action: Action, resource: Resource) -> Decision | None:
    """A requested event type or object id outside its canonical form (see `names`): refused for every
    principal, before any pattern sees it."""
    if action.level is Level.EVENT_TYPE and (problem := names.event_type_problem(resource.event_type)):
        return _deny(reasons.EVENT_TYPE_INVALID, "S3", problem)
    if action.level is Level.OBJECT and (problem := names.object_id_problem(resource.object_id)):
        return _deny(reasons.OBJECT_ID_INVALID, "S4", problem)
    return None


def event_type_decision(principal: Principal, event_type: str) -> Decision | None:
    """S3 allow/deny globs on a canonical event type: deny wins; an empty allow list allows every event
    type."""
    for pattern in principal.event_types_denied:
        if names.event_type_matches(event_type, pattern, fold=True):
            return _deny(reasons.EVENT_TYPE_DENIED, "S3", f"event type matches deny pattern {pattern!r}")
    if principal.event_types_allowed and not any(
        names.event_type_matches(event_type, pattern) for pattern in principal.event_types_allowed
    ):
        return _deny(reasons.EVENT_TYPE_NOT_ALLOWED, "S3", "event type matches no allow pattern")
    return None


def _not_a_member(principal: Principal, resource: Resource) -> Decision:
    if resource.organization_id in principal.unbound_organizations:
        return _deny(
            reasons.ISSUER_NOT_BOUND,
            "S7",
            "the token's issuer is not bound to this organization: the roles it claims here are ignored",
        )
    return _deny(reasons.NOT_A_MEMBER, "S1", "the user holds no role in this organization")


def _user(principal: Principal, action: Action, resource: Resource, catalogue: Catalogue) -> Decision:
    """S1: a user acts only in organizations where they hold a role, with that role's actions. Roles
    the catalogue does not know (an IdP's `offline_access`...) grant nothing."""
    roles = next((set(r) for org, r in principal.memberships if org == resource.organization_id), None)
    if roles is None:
        return _not_a_member(principal, resource)
    granting = sorted(roles & action.roles & set(catalogue.roles))
    if not granting:
        return _deny(reasons.ROLE_NOT_GRANTED, "S1", f"none of the user's roles grants {action.name!r}")
    return _allow("S1", f"role {granting[0]!r} grants {action.name!r}")


def _application_secret(principal: Principal, action: Action, resource: Resource, _: Catalogue) -> Decision:
    """S2: application-level actions on the secret's own application only."""
    if action.level not in APPLICATION_LEVELS:
        return _deny(
            reasons.ACTION_LEVEL_NOT_ALLOWED,
            "S2",
            f"an application secret cannot perform {action.level.value}-level actions",
        )
    if resource.application_id != principal.application_id:
        return _deny(reasons.RESOURCE_NOT_IN_SCOPE, "S2", "the resource is outside the secret's application")
    return _allow("S2", "application secret acting on its own application")


def _grant_list(principal: Principal, action: Action, resource: Resource, _: Catalogue) -> Decision:
    """S3: only granted actions; actions on events filtered by the allow/deny globs."""
    if action.name not in principal.permissions:
        return _deny(reasons.ACTION_NOT_GRANTED, "S3", f"{action.name!r} is not granted to this credential")
    if action.level is Level.EVENT_TYPE:
        filtered = event_type_decision(principal, resource.event_type)
        if filtered is not None:
            return filtered
    return _allow("S3", f"{action.name!r} is granted to this credential")


def _tenant_token(principal: Principal, action: Action, resource: Resource, _: Catalogue) -> Decision:
    """S4: the token's permissions (already capped by its signing secret's ceiling); updates are
    published only for objects its data-provider patterns name."""
    if action.name not in principal.permissions:
        return _deny(reasons.ACTION_NOT_GRANTED, "S4", f"{action.name!r} is not granted by this token")
    if action.name == "object.publish" and not any(
        names.object_matches(resource.object_id, pattern) for pattern in principal.data_provider_patterns
    ):
        return _deny(reasons.OBJECT_NOT_IN_PATTERNS, "S4", "the object matches no data-provider pattern")
    return _allow("S4", f"{action.name!r} is granted by this token")


def _subject_token(principal: Principal, action: Action, resource: Resource, _: Catalogue) -> Decision:
    """S5: only track, traits and alias, and only on the token's own subject."""
    if action.name not in SUBJECT_ACTIONS or action.level is not Level.SUBJECT:
        return _deny(
            reasons.ACTION_LEVEL_NOT_ALLOWED,
            "S5",
            "a subject-scoped token may only track, set traits and alias",
        )
    if action.name not in principal.permissions:
        return _deny(
            reasons.ACTION_NOT_GRANTED, "S5", f"{action.name!r} is not granted to this token's connector"
        )
    if resource.subject != principal.subject:
        return _deny(reasons.SUBJECT_MISMATCH, "S5", "the token acts as another subject")
    return _allow("S5", "subject-scoped token acting on its own subject")


Rule = Callable[[Principal, Action, Resource, Catalogue], Decision]
RULES: dict[CredentialKind, Rule] = {
    CredentialKind.APPLICATION_SECRET: _application_secret,
    CredentialKind.TENANT_JWT: _tenant_token,
    CredentialKind.SUBJECT_JWT: _subject_token,
    **dict.fromkeys(GRANT_LIST_KINDS, _grant_list),
}


def decide(catalogue: Catalogue, principal: Principal, action_name: str, resource: Resource) -> Decision:
    """Deny by default (S8): only a rule that positively matches allows."""
    action = catalogue.get(action_name)
    if action is None:
        return _deny(reasons.ACTION_UNKNOWN, "S8", "the action is not in the action catalogue")
    missing = missing_resource_field(action, resource)
    if missing is not None:
        return _deny(
            reasons.RESOURCE_INCOMPLETE, "S8", f"{action.level.value}-level actions need resource.{missing}"
        )
    malformed = malformed_name(action, resource)
    if malformed is not None:
        return malformed
    if principal.kind is CredentialKind.EXTERNAL_JWT:
        return _user(principal, action, resource, catalogue)
    # S7: every other principal belongs to exactly one organization and never acts outside it.
    if not principal.organization_id or principal.organization_id != resource.organization_id:
        return _deny(
            reasons.RESOURCE_NOT_IN_SCOPE, "S7", "the resource is outside the principal's organization"
        )
    rule = RULES.get(principal.kind)
    if rule is None:
        return _deny(reasons.NO_RULE_ALLOWS, "S8", "no rule lets this kind of credential act on resources")
    return rule(principal, action, resource, catalogue)
