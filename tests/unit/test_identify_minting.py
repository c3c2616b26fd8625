"""Minting credentials in the domain (identify/minting.py, I4): each mintable kind's secret has its prefix
and is sealed exactly when its row in the kinds table (or client_secret_jwt) says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watchword import secret_format
from watchword.crypto import master_key
from watchword.crypto.master_key import MasterKey
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind, FieldError
from watchword.identify import kinds, minting
from watchword.identify.oauth_client import CLIENT_SECRET_JWT
from watchword.identify.sealed_keys import sealing_purpose

MASTER = MasterKey.from_text(master_key.generate(), "test")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(kind: CredentialKind, **fields: object) -> minting.NewCredential:
    base: dict[str, object] = {"kind": kind, "name": "n", "organization_id": "org"}
    if kind is CredentialKind.ADMIN_TOKEN:
        base["organization_id"] = ""
    if kind is CredentialKind.APPLICATION_SECRET:
        base["application_id"] = "app"
    if kind is CredentialKind.OAUTH_CLIENT:
        base["client_auth_method"] = 1
    if kind is CredentialKind.CLIENT_CERTIFICATE:
        base["service_identity"] = "spiffe://example.org/worker"
    base.update(fields)
    return minting.NewCredential(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind", sorted(kinds.MINTABLE - kinds.SECRETLESS), ids=lambda kind: kind.name.lower()
)
def test_i4_each_mintable_kind_gets_a_secret_of_its_own_prefix(kind: CredentialKind) -> None:
    row, secret = minting.create(_spec(kind), Catalogue.load(), MASTER, NOW)
    assert row.kind == int(kind)
    assert secret_format.parse(secret) == secret_format.ParsedSecret(kind, row.id)
    assert secret_format.secret_matches(secret, row.secret_hash)
    assert (row.sealed_secret is not None) == (kind in kinds.SEALED)
    if row.sealed_secret is not None:
        assert MASTER.open(row.sealed_secret, sealing_purpose(row.id)) == secret.encode()


@pytest.mark.parametrize("kind", sorted(set(CredentialKind) - kinds.MINTABLE), ids=lambda k: k.name.lower())
def test_i4_kinds_that_are_not_mintable_are_refused_naming_the_kind(kind: CredentialKind) -> None:
    with pytest.raises(FieldError) as raised:
        minting.create(_spec(kind), Catalogue.load(), MASTER, NOW)
    assert raised.value.field == "kind"


def test_i4_expiry_must_be_in_the_future() -> None:
    with pytest.raises(FieldError, match="expires_at"):
        minting.create(_spec(CredentialKind.API_KEY, expires_at=NOW), Catalogue.load(), MASTER, NOW)
    row, _ = minting.create(
        _spec(CredentialKind.API_KEY, expires_at=NOW + timedelta(days=1)), Catalogue.load(), MASTER, NOW
    )
    assert row.expires_at == NOW + timedelta(days=1)


def test_c9_client_secret_jwt_clients_keep_a_sealed_secret_when_rotated() -> None:
    # The secret signs the client's assertions (HS256), so Watchword must be able to open it after a
    # rotation too; before the minting module, a rotation stored no sealed secret for these clients.
    spec = _spec(CredentialKind.OAUTH_CLIENT, client_auth_method=CLIENT_SECRET_JWT)
    row, _ = minting.create(spec, Catalogue.load(), MASTER, NOW)
    assert row.sealed_secret is not None
    rotated = minting.rotated_secret(row, MASTER)
    assert rotated.sealed is not None
    assert MASTER.open(rotated.sealed, sealing_purpose(row.id)) == rotated.value.encode()
    assert secret_format.secret_matches(rotated.value, rotated.hash)


def test_c10_a_secretless_credential_has_nothing_to_rotate() -> None:
    row, secret = minting.create(_spec(CredentialKind.CLIENT_CERTIFICATE), Catalogue.load(), MASTER, NOW)
    assert (secret, row.secret_hash, row.sealed_secret) == ("", "", None)
    with pytest.raises(FieldError, match="no secret to rotate"):
        minting.rotated_secret(row, MASTER)


@pytest.mark.parametrize(
    "kind", sorted(kinds.MINTABLE - kinds.SECRETLESS), ids=lambda kind: kind.name.lower()
)
def test_i6_a_rotated_secret_is_sealed_as_the_created_one_was(kind: CredentialKind) -> None:
    row, _ = minting.create(_spec(kind), Catalogue.load(), MASTER, NOW)
    rotated = minting.rotated_secret(row, MASTER)
    assert secret_format.parse(rotated.value) == secret_format.ParsedSecret(kind, row.id)
    assert (rotated.sealed is None) == (row.sealed_secret is None)
