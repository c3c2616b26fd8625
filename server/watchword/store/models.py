"""SQLModel tables. Inbound secrets are stored only as SHA-256 hashes (see `secret_format`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json_list() -> Any:
    return Field(default_factory=list, sa_type=sa.JSON, nullable=False)


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class Application(SQLModel, table=True):
    __tablename__ = "applications"

    id: str = Field(primary_key=True, max_length=36)
    organization_id: str = Field(
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


# The issuer of memberships written before they were keyed by issuer (migration 0006): such a row matches
# no token (no configured issuer is empty) until it is bound to an issuer (`Store.bind_unbound_memberships`).
UNBOUND_ISSUER = ""


class Membership(SQLModel, table=True):
    """A user's stored roles in one organization (S1). A user is the pair (issuer, subject): the same
    subject from two identity providers is two users, who never share roles (S7)."""

    __tablename__ = "memberships"

    organization_id: str = Field(
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
        )
    )
    issuer: str = Field(primary_key=True, max_length=2048)
    user_id: str = Field(primary_key=True, max_length=255, index=True)
    roles: list[str] = _json_list()


class Credential(SQLModel, table=True):
    """Every inbound credential kind in one table: they share the secret, state and grant columns,
    and one table makes deactivation, rotation and listing one code path."""

    __tablename__ = "credentials"

    id: str = Field(primary_key=True, max_length=16)
    kind: int = Field(nullable=False, index=True)
    organization_id: str | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=True, index=True
        ),
    )
    application_id: str | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("applications.id", ondelete="CASCADE"), nullable=True, index=True
        ),
    )
    name: str = Field(max_length=200)
    secret_hash: str = Field(max_length=64)
    secret_hint: str = Field(max_length=32)
    # Kinds whose secret is also a signing key (C4 tenant signing secrets, C6/C7 connector secrets, C9
    # client_secret_jwt) keep it sealed under the master key as well; all others keep only the hash.
    sealed_secret: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    previous_sealed_secret: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    previous_secret_hash: str | None = Field(default=None, max_length=64)
    previous_secret_valid_until: datetime | None = Field(default=None, sa_type=UtcDateTime)
    permissions: list[str] = _json_list()
    event_types_allowed: list[str] = _json_list()
    event_types_denied: list[str] = _json_list()
    basic_auth_enabled: bool = Field(default=False, nullable=False)
    algorithms: list[str] = _json_list()
    client_auth_method: int = Field(default=0, nullable=False)
    public_jwk: str = Field(default="", sa_type=sa.Text, nullable=False)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    deactivated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    rotated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # C10: the SPIFFE id or subject name of a service identity, its lookup key (unique, matched exactly).
    service_identity: str | None = Field(default=None, max_length=255, unique=True, index=True)
    # Key hygiene (`watchword.hygiene`): written in batches by the usage flusher, and by a leak report.
    last_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    leak_reported_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class CredentialUsage(SQLModel, table=True):
    """How often a credential was used on one UTC day: every replica and worker adds its counts to the
    same row (an additive upsert, `store.credential_usage`). Rows older than the retention are pruned."""

    __tablename__ = "credential_usage"

    credential_id: str = Field(
        sa_column=sa.Column(
            sa.String(16), sa.ForeignKey("credentials.id", ondelete="CASCADE"), primary_key=True
        )
    )
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True, index=True))
    uses: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)


class SigningKey(SQLModel, table=True):
    """Watchword's own asymmetric signing keys (I5); private halves encrypted under the master key."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=16)
    public_jwk: str = Field(sa_type=sa.Text)
    encrypted_private_key: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    active: bool = Field(default=False, nullable=False)
    retires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class UsedClientAssertion(SQLModel, table=True):
    """`jti`s of OAuth client assertions already accepted (C9): the primary key makes a replay fail on
    every replica sharing the database. Rows are dropped once the assertion has expired."""

    __tablename__ = "used_client_assertions"

    client_id: str = Field(primary_key=True, max_length=16)
    jti: str = Field(primary_key=True, max_length=255)
    expires_at: datetime = Field(sa_type=UtcDateTime, nullable=False, index=True)


class RevokedToken(SQLModel, table=True):
    """A token revoked by its `jti` (I6). Dropped once the token would have expired anyway, so the
    list only ever holds tokens that could still be presented."""

    __tablename__ = "revoked_tokens"

    jti: str = Field(primary_key=True, max_length=255)
    expires_at: datetime = Field(sa_type=UtcDateTime, nullable=False, index=True)
    revoked_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class OutboundCredential(SQLModel, table=True):
    """How an outbound webhook proves itself to a customer's endpoint (O1-O6). Every secret (bearer token,
    password, client secret, private key, payload signing secret) is sealed under the master key as one
    JSON document (O6), bound to the credential's id; none is ever returned after creation."""

    __tablename__ = "outbound_credentials"

    id: str = Field(primary_key=True, max_length=16)
    organization_id: str = Field(
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    name: str = Field(max_length=200)
    scheme: int = Field(nullable=False)
    username: str = Field(default="", max_length=255)
    token_url: str = Field(default="", max_length=2048)
    client_id: str = Field(default="", max_length=255)
    client_auth_method: int = Field(default=0, nullable=False)
    assertion_audience: str = Field(default="", max_length=2048)
    assertion_algorithm: str = Field(default="", max_length=16)
    scope: str = Field(default="", max_length=2048)
    extra_form_fields: list[list[str]] = _json_list()
    sign_payload: bool = Field(default=False, nullable=False)
    public_jwk: str = Field(default="", sa_type=sa.Text, nullable=False)
    sealed_secrets: bytes = Field(sa_type=sa.LargeBinary)
    previous_sealed_secrets: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    previous_secret_valid_until: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    deactivated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    rotated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ChangeLogEntry(SQLModel, table=True):
    """One committed change (`change_feed.Change.encode()`), for the processes sharing an SQLite file
    (`store.change_log`). AUTOINCREMENT: ids are never reused, so a follower can tell what it missed."""

    __tablename__ = "change_log"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    payload: str = Field(sa_type=sa.Text, nullable=False)
