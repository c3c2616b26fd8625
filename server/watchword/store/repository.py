"""The store: one object with every query, each aggregate's in its own module. Each public method is one
transaction: it commits whole or not at all; a write announces what it changed (`store.base`)."""

from __future__ import annotations

from watchword.store.base import InvalidPageTokenError, NotFoundError, Page
from watchword.store.credential_usage import CredentialUsageQueries
from watchword.store.credentials import CredentialQueries
from watchword.store.memberships import MembershipQueries
from watchword.store.organizations import OrganizationQueries
from watchword.store.outbound_credentials import OutboundCredentialQueries
from watchword.store.signing_keys import SigningKeyQueries
from watchword.store.token_records import TokenRecordQueries

__all__ = ["InvalidPageTokenError", "NotFoundError", "Page", "Store"]


class Store(
    OrganizationQueries,
    MembershipQueries,
    CredentialQueries,
    CredentialUsageQueries,
    OutboundCredentialQueries,
    TokenRecordQueries,
    SigningKeyQueries,
):
    """The credential store: organizations, applications, memberships, inbound and outbound credentials,
    token records and signing keys. `Store.connect(url)`; `close()` when done."""
