"""The scope table (issue 4, "Proof"): every credential kind x every action of the default catalogue x
three resources (own, a sibling in the same organization, another organization), each cell with its
expected decision, reason and rule written out below as literal data, never computed.

Pure: `decide()` on plain dataclasses, no server. The same cases, fewer of them, run through the real
server in server/test_scope_through_the_server.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from watchword import reasons
from watchword.decide.catalogue import APPLICATION_LEVELS, Catalogue
from watchword.decide.rules import decide
from watchword.domain import CredentialKind, Principal, Resource, Subject, Transport

CATALOGUE = Catalogue.load()
ORG_A, ORG_B = "org-a", "org-b"
APP_A1, APP_A2, APP_B1 = "app-a1", "app-a2", "app-b1"
U1, U2 = Subject("user", "u-1"), Subject("user", "u-2")

# Three resources, each naming every field so that every action level finds what it needs. The caller
# resolves an application's organization before deciding (pipeline.resolve), so these are resolved.
# The sibling differs from "own" in whatever field each level reads: another application, an event type
# the C5 key denies (and C3's deny list names), an object outside C4's patterns, another subject.
# Organization-level actions read only the organization, which the sibling shares with "own".
PLACES: dict[str, Resource] = {
    "own": Resource(ORG_A, APP_A1, "order.created", "truck-12", U1),
    "sibling": Resource(ORG_A, APP_A2, "order.internal.audit", "car-1", U2),
    "other-org": Resource(ORG_B, APP_B1, "order.created", "truck-12", U1),
}


def _principal(kind: CredentialKind, transport: Transport = Transport.BEARER, **fields: Any) -> Principal:
    return Principal(id=f"{kind.name.lower()}-1", kind=kind, transport=transport, **fields)


# One principal per kind, with concrete grants, as the identify step would build them.
PRINCIPALS: dict[str, Principal] = {
    # A user who is "editor" in A and holds nothing in B.
    "C1": _principal(CredentialKind.EXTERNAL_JWT, memberships=((ORG_A, ("editor",)),)),
    # Bound to application A1; identify gives it the application-level actions as permissions.
    "C2": _principal(
        CredentialKind.APPLICATION_SECRET,
        organization_id=ORG_A,
        application_id=APP_A1,
        permissions=CATALOGUE.actions_at(APPLICATION_LEVELS),
    ),
    # No allow list (every event type), a deny list.
    "C3": _principal(
        CredentialKind.STATIC_TOKEN,
        organization_id=ORG_A,
        permissions=frozenset({"application.get", "event.list", "object.publish"}),
        event_types_denied=("*.internal.*",),
    ),
    # Patterns bound object.publish only; object.read reaches every object of the organization.
    "C4": _principal(
        CredentialKind.TENANT_JWT,
        organization_id=ORG_A,
        permissions=frozenset({"object.publish", "object.read"}),
        data_provider_patterns=("truck-*",),
    ),
    "C5": _principal(
        CredentialKind.API_KEY,
        organization_id=ORG_A,
        permissions=frozenset({"event.send", "application.list", "event_type.list"}),
        event_types_allowed=("order.*",),
        event_types_denied=("order.internal.*",),
    ),
    # A connector acts for any subject of its organization (only its subject tokens are bound to one).
    "C6": _principal(
        CredentialKind.CONNECTOR,
        Transport.HEADER_PAIR,
        organization_id=ORG_A,
        permissions=frozenset({"track"}),
    ),
    "C7": _principal(
        CredentialKind.SUBJECT_JWT,
        Transport.HEADER_PAIR,
        organization_id=ORG_A,
        subject=U1,
        permissions=frozenset({"track", "traits", "alias"}),
    ),
    "C8": _principal(
        CredentialKind.WATCHWORD_TOKEN, organization_id=ORG_A, permissions=frozenset({"event.send"})
    ),
    # No rule lets an OAuth client act on resources: it only authenticates at the token endpoint.
    "C9": _principal(
        CredentialKind.OAUTH_CLIENT,
        Transport.BASIC,
        organization_id=ORG_A,
        permissions=frozenset(CATALOGUE.actions),
    ),
}

# Under each [kind]: action, then the cells for own, sibling and other-org, apart by two spaces or more.
# A cell is `+` (allowed) or `-` (denied), the reason code, and the rule that decided.
TABLE = """
[C1]
organization.get     + allowed S1                   + allowed S1                   - not_a_member S1
organization.update  - role_not_granted S1          - role_not_granted S1          - not_a_member S1
organization.delete  - role_not_granted S1          - role_not_granted S1          - not_a_member S1
outbound.sign        - role_not_granted S1          - role_not_granted S1          - not_a_member S1
token.introspect     - role_not_granted S1          - role_not_granted S1          - not_a_member S1
token.revoke         - role_not_granted S1          - role_not_granted S1          - not_a_member S1
application.create   + allowed S1                   + allowed S1                   - not_a_member S1
application.list     + allowed S1                   + allowed S1                   - not_a_member S1
application.get      + allowed S1                   + allowed S1                   - not_a_member S1
application.update   + allowed S1                   + allowed S1                   - not_a_member S1
application.delete   + allowed S1                   + allowed S1                   - not_a_member S1
event_type.create    + allowed S1                   + allowed S1                   - not_a_member S1
event_type.list      + allowed S1                   + allowed S1                   - not_a_member S1
event_type.delete    + allowed S1                   + allowed S1                   - not_a_member S1
subscription.create  + allowed S1                   + allowed S1                   - not_a_member S1
subscription.list    + allowed S1                   + allowed S1                   - not_a_member S1
subscription.update  + allowed S1                   + allowed S1                   - not_a_member S1
subscription.delete  + allowed S1                   + allowed S1                   - not_a_member S1
event.send           + allowed S1                   + allowed S1                   - not_a_member S1
event.list           + allowed S1                   + allowed S1                   - not_a_member S1
object.publish       + allowed S1                   + allowed S1                   - not_a_member S1
object.read          + allowed S1                   + allowed S1                   - not_a_member S1
track                + allowed S1                   + allowed S1                   - not_a_member S1
traits               + allowed S1                   + allowed S1                   - not_a_member S1
alias                + allowed S1                   + allowed S1                   - not_a_member S1

[C2]
organization.get     - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
organization.update  - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
organization.delete  - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
outbound.sign        - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
token.introspect     - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
token.revoke         - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
application.create   - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
application.list     - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
application.get      + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
application.update   + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
application.delete   + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
event_type.create    + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
event_type.list      + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
event_type.delete    + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
subscription.create  + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
subscription.list    + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
subscription.update  + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
subscription.delete  + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
event.send           + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
event.list           + allowed S2                   - resource_not_in_scope S2     - resource_not_in_scope S7
object.publish       - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
object.read          - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
track                - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
traits               - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7
alias                - action_level_not_allowed S2  - action_level_not_allowed S2  - resource_not_in_scope S7

[C3]
organization.get     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
organization.update  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
organization.delete  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
outbound.sign        - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
token.introspect     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
token.revoke         - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.create   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.list     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.get      + allowed S3                   + allowed S3                   - resource_not_in_scope S7
application.update   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.delete   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.create    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.list      - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.delete    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.create  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.list    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.update  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.delete  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event.send           - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event.list           + allowed S3                   - event_type_denied S3         - resource_not_in_scope S7
object.publish       + allowed S3                   + allowed S3                   - resource_not_in_scope S7
object.read          - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
track                - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
traits               - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
alias                - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7

[C4]
organization.get     - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
organization.update  - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
organization.delete  - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
outbound.sign        - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
token.introspect     - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
token.revoke         - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
application.create   - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
application.list     - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
application.get      - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
application.update   - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
application.delete   - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
event_type.create    - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
event_type.list      - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
event_type.delete    - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
subscription.create  - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
subscription.list    - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
subscription.update  - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
subscription.delete  - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
event.send           - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
event.list           - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
object.publish       + allowed S4                   - object_not_in_patterns S4    - resource_not_in_scope S7
object.read          + allowed S4                   + allowed S4                   - resource_not_in_scope S7
track                - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
traits               - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7
alias                - action_not_granted S4        - action_not_granted S4        - resource_not_in_scope S7

[C5]
organization.get     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
organization.update  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
organization.delete  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
outbound.sign        - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
token.introspect     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
token.revoke         - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.create   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.list     + allowed S3                   + allowed S3                   - resource_not_in_scope S7
application.get      - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.update   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.delete   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.create    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.list      + allowed S3                   + allowed S3                   - resource_not_in_scope S7
event_type.delete    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.create  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.list    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.update  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.delete  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event.send           + allowed S3                   - event_type_denied S3         - resource_not_in_scope S7
event.list           - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
object.publish       - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
object.read          - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
track                - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
traits               - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
alias                - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7

[C6]
organization.get     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
organization.update  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
organization.delete  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
outbound.sign        - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
token.introspect     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
token.revoke         - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.create   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.list     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.get      - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.update   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.delete   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.create    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.list      - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.delete    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.create  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.list    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.update  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.delete  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event.send           - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event.list           - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
object.publish       - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
object.read          - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
track                + allowed S3                   + allowed S3                   - resource_not_in_scope S7
traits               - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
alias                - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7

[C7]
organization.get     - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
organization.update  - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
organization.delete  - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
outbound.sign        - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
token.introspect     - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
token.revoke         - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
application.create   - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
application.list     - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
application.get      - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
application.update   - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
application.delete   - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
event_type.create    - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
event_type.list      - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
event_type.delete    - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
subscription.create  - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
subscription.list    - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
subscription.update  - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
subscription.delete  - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
event.send           - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
event.list           - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
object.publish       - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
object.read          - action_level_not_allowed S5  - action_level_not_allowed S5  - resource_not_in_scope S7
track                + allowed S5                   - subject_mismatch S5          - resource_not_in_scope S7
traits               + allowed S5                   - subject_mismatch S5          - resource_not_in_scope S7
alias                + allowed S5                   - subject_mismatch S5          - resource_not_in_scope S7

[C8]
organization.get     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
organization.update  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
organization.delete  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
outbound.sign        - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
token.introspect     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
token.revoke         - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.create   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.list     - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.get      - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.update   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
application.delete   - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.create    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.list      - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event_type.delete    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.create  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.list    - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.update  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
subscription.delete  - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
event.send           + allowed S3                   + allowed S3                   - resource_not_in_scope S7
event.list           - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
object.publish       - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
object.read          - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
track                - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
traits               - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7
alias                - action_not_granted S3        - action_not_granted S3        - resource_not_in_scope S7

[C9]
organization.get     - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
organization.update  - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
organization.delete  - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
outbound.sign        - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
token.introspect     - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
token.revoke         - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
application.create   - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
application.list     - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
application.get      - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
application.update   - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
application.delete   - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
event_type.create    - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
event_type.list      - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
event_type.delete    - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
subscription.create  - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
subscription.list    - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
subscription.update  - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
subscription.delete  - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
event.send           - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
event.list           - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
object.publish       - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
object.read          - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
track                - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
traits               - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
alias                - no_rule_allows S8            - no_rule_allows S8            - resource_not_in_scope S7
"""


@dataclass(frozen=True)
class Cell:
    kind: str
    action: str
    place: str
    allowed: bool
    reason: str
    rule: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.action}-{self.place}"


def _parse(table: str) -> list[Cell]:
    cells = []
    kind = ""
    for line in table.strip().splitlines():
        if not line.strip():
            continue
        if line.startswith("["):
            kind = line.strip("[]")
            continue
        action, *expected = re.split(r"\s{2,}", line.strip())
        for place, cell in zip(PLACES, expected, strict=True):
            sign, reason, rule = cell.split()
            assert sign in ("+", "-"), line
            cells.append(Cell(kind, action, place, sign == "+", reason, rule))
    return cells


CELLS = _parse(TABLE)


def _cells(*, kinds: set[str] | None = None, places: set[str]) -> list[Any]:
    return [
        pytest.param(cell, id=cell.id)
        for cell in CELLS
        if (kinds is None or cell.kind in kinds) and cell.place in places
    ]


def _check(cell: Cell) -> None:
    decision = decide(CATALOGUE, PRINCIPALS[cell.kind], cell.action, PLACES[cell.place])
    assert (decision.allowed, decision.reason, decision.rule) == (cell.allowed, cell.reason, cell.rule), (
        decision.message
    )
    assert decision.message, "every decision explains itself"


def test_the_table_covers_every_kind_and_every_catalogue_action_exactly_once() -> None:
    # A new action in the default catalogue must get its row for every kind before this passes.
    rows = [(cell.kind, cell.action) for cell in CELLS if cell.place == "own"]
    assert len(rows) == len(set(rows))
    assert set(rows) == {(kind, action) for kind in PRINCIPALS for action in CATALOGUE.actions}
    assert {cell.reason for cell in CELLS} <= set(reasons.REASONS)
    # The S7 column of the table itself: whatever else changes, nothing there may ever read `+`.
    assert not [cell.id for cell in CELLS if cell.place == "other-org" and cell.allowed]


@pytest.mark.parametrize("cell", _cells(kinds={"C1"}, places={"own", "sibling"}))
def test_s1_user_acts_with_the_actions_of_its_role(cell: Cell) -> None:
    _check(cell)


@pytest.mark.parametrize("cell", _cells(kinds={"C2"}, places={"own", "sibling"}))
def test_s2_application_secret_only_on_its_own_application(cell: Cell) -> None:
    _check(cell)


@pytest.mark.parametrize("cell", _cells(kinds={"C3", "C5", "C6", "C8"}, places={"own", "sibling"}))
def test_s3_granted_actions_and_event_type_globs(cell: Cell) -> None:
    _check(cell)


@pytest.mark.parametrize("cell", _cells(kinds={"C4"}, places={"own", "sibling"}))
def test_s4_tenant_token_permissions_and_data_provider_patterns(cell: Cell) -> None:
    _check(cell)


@pytest.mark.parametrize("cell", _cells(kinds={"C7"}, places={"own", "sibling"}))
def test_s5_subject_token_only_on_its_own_subject(cell: Cell) -> None:
    _check(cell)


@pytest.mark.parametrize("cell", _cells(places={"other-org"}))
def test_s7_nothing_reaches_another_organization(cell: Cell) -> None:
    _check(cell)


@pytest.mark.parametrize("cell", _cells(kinds={"C9"}, places={"own", "sibling"}))
def test_s8_a_kind_without_a_rule_is_denied_by_default(cell: Cell) -> None:
    _check(cell)
