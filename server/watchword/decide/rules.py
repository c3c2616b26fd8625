"""The scope rules (S2, S3, S7, S8 today): (principal, action, resource) -> Decision. Pure: no I/O.

The caller resolves the resource first (an application's organization comes from the store), so every
rule here sees a resource whose organization is the true one.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from watchword import reasons
from watchword.decide.catalogue import APPLICATION_LEVELS, Action, Catalogue, Level
from watchword.domain import CredentialKind, Decision, Principal, Resource

# Credentials whose reach is their own list of granted actions (S3).
GRANT_LIST_KINDS = frozenset({CredentialKind.API_KEY, CredentialKind.STATIC_TOKEN})


def _deny(reason: str, rule: str, message: str) -> Decision:
    return Decision(allowed=False, reason=reason, rule=rule, message=message)


def _allow(rule: str, message: str) -> Decision:
    return Decision(allowed=True, reason=reasons.ALLOWED, rule=rule, message=message)


def missing_resource_field(action: Action, resource: Resource) -> str | None:
    """The first resource field the action's level needs that is empty, or None."""
    needed: dict[Level, tuple[str, ...]] = {
        Level.ORGANIZATION: ("organization_id",),
        Level.APPLICATION: ("application_id",),
        Level.EVENT_TYPE: ("application_id", "event_type"),
        Level.OBJECT: ("organization_id", "object_id"),
        Level.SUBJECT: ("organization_id", "subject"),
    }
    for name in needed[action.level]:
        if not getattr(resource, name):
            return name
    return None


def event_type_decision(principal: Principal, event_type: str) -> Decision | None:
    """S3 allow/deny globs on event types: deny wins; an empty allow list allows every event type."""
    for pattern in principal.event_types_denied:
        if fnmatchcase(event_type, pattern):
            return _deny(reasons.EVENT_TYPE_DENIED, "S3", f"event type matches deny pattern {pattern!r}")
    if principal.event_types_allowed and not any(
        fnmatchcase(event_type, pattern) for pattern in principal.event_types_allowed
    ):
        return _deny(reasons.EVENT_TYPE_NOT_ALLOWED, "S3", "event type matches no allow pattern")
    return None


def _application_secret(principal: Principal, action: Action, resource: Resource) -> Decision:
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


def _grant_list(principal: Principal, action: Action, resource: Resource) -> Decision:
    """S3: only granted actions; actions on events filtered by the allow/deny globs."""
    if action.name not in principal.permissions:
        return _deny(reasons.ACTION_NOT_GRANTED, "S3", f"{action.name!r} is not granted to this credential")
    if action.level is Level.EVENT_TYPE:
        filtered = event_type_decision(principal, resource.event_type)
        if filtered is not None:
            return filtered
    return _allow("S3", f"{action.name!r} is granted to this credential")


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
    if not principal.organization_id or principal.organization_id != resource.organization_id:
        return _deny(
            reasons.RESOURCE_NOT_IN_SCOPE, "S7", "the resource is outside the principal's organization"
        )
    if principal.kind is CredentialKind.APPLICATION_SECRET:
        return _application_secret(principal, action, resource)
    if principal.kind in GRANT_LIST_KINDS:
        return _grant_list(principal, action, resource)
    return _deny(reasons.NO_RULE_ALLOWS, "S8", "no rule allows this kind of credential to act yet")
