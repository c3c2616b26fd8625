"""Opaque secrets (C2, C3, C5, C6) at the verifier: malformed input costs no store query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watchword import reasons, secret_format
from watchword.domain import CredentialKind, PresentedCredential, Refusal, Transport
from watchword.identify import opaque_secret
from watchword.store.models import Credential

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(kind: CredentialKind = CredentialKind.API_KEY, **fields: object) -> tuple[Credential, str]:
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(kind, credential_id)
    row = Credential(
        id=credential_id,
        kind=int(kind),
        organization_id="org",
        name="x",
        secret_hash=secret_format.hash_secret(secret),
        secret_hint=secret_format.hint(secret),
        **fields,
    )
    return row, secret


class Lookup:
    def __init__(self, *rows: Credential) -> None:
        self.rows = {row.id: row for row in rows}
        self.calls = 0

    async def __call__(self, credential_id: str) -> Credential | None:
        self.calls += 1
        return self.rows.get(credential_id)


async def verify(token: str, lookup: Lookup, transport: Transport = Transport.BEARER, client_id: str = ""):
    verifier = opaque_secret.OpaqueSecretVerifier(lookup, frozenset())
    return await verifier.verify(PresentedCredential(token, transport, client_id), NOW)


async def test_c5_malformed_secrets_cost_no_store_query() -> None:
    row, secret = record()
    lookup = Lookup(row)
    for bad in (
        "x",
        secret[:-1] + "0" if secret[-1] != "0" else secret[:-1] + "1",
        "wwzz" + secret[4:],
        secret + "a",
    ):
        refused = await verify(bad, lookup)
        assert isinstance(refused, Refusal)
        assert refused.reason == reasons.CREDENTIAL_MALFORMED
    assert lookup.calls == 0
    assert not isinstance(await verify(secret, lookup), Refusal)
    assert lookup.calls == 1


async def test_c5_state_is_revealed_only_to_holders_of_the_secret() -> None:
    row, secret = record(deactivated_at=NOW - timedelta(days=1))
    forged = secret_format.mint(CredentialKind.API_KEY, row.id)
    lookup = Lookup(row)
    assert (await verify(forged, lookup)).reason == reasons.CREDENTIAL_UNKNOWN
    assert (await verify(secret, lookup)).reason == reasons.CREDENTIAL_DEACTIVATED


async def test_c5_previous_secret_works_only_within_its_overlap() -> None:
    row, old = record()
    new = secret_format.mint(CredentialKind.API_KEY, row.id)
    row.previous_secret_hash = row.secret_hash
    row.secret_hash = secret_format.hash_secret(new)
    row.previous_secret_valid_until = NOW + timedelta(seconds=1)
    lookup = Lookup(row)
    assert not isinstance(await verify(old, lookup), Refusal)
    row.previous_secret_valid_until = NOW
    assert (await verify(old, lookup)).reason == reasons.CREDENTIAL_UNKNOWN
    assert not isinstance(await verify(new, lookup), Refusal)


async def test_c6_connector_id_must_name_the_same_connector() -> None:
    row, secret = record(CredentialKind.CONNECTOR)
    lookup = Lookup(row)
    ok = await verify(secret, lookup, Transport.HEADER_PAIR, row.id)
    assert not isinstance(ok, Refusal)
    assert (await verify(secret, lookup, Transport.HEADER_PAIR, "other")).reason == reasons.CREDENTIAL_UNKNOWN
    query = await verify(secret, lookup, Transport.QUERY, row.id)
    assert not isinstance(query, Refusal)
    assert query.discouraged_transport


def test_c5_the_remembered_state_reads_what_the_attributes_read() -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    loaded, _ = record(
        previous_secret_hash="h", previous_secret_valid_until=later, deactivated_at=None, expires_at=later
    )
    partial, _ = record()  # state fields never set: read through SQLAlchemy's attributes
    for row in (loaded, partial):
        expected = (
            row.secret_hash,
            row.previous_secret_hash,
            row.previous_secret_valid_until,
            row.deactivated_at,
            row.expires_at,
        )
        assert opaque_secret._state(row) == expected
    assert opaque_secret._state(loaded)[1:] == ("h", later, None, later)
