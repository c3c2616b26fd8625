"""Verified opaque secrets (C2, C3, C5, C6 and C9 over Basic), remembered for speed (issue #8): a secret
seen before skips the parse, hash and principal building, but never a check that could change its answer.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from watchword import reasons, secret_format
from watchword.domain import CredentialKind, PresentedCredential, Principal, Refusal, Transport
from watchword.identify import opaque_secret
from watchword.store.models import Credential

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(**fields: object) -> tuple[Credential, str]:
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(CredentialKind.API_KEY, credential_id)
    row = Credential(
        id=credential_id,
        kind=int(CredentialKind.API_KEY),
        organization_id="org",
        name="x",
        secret_hash=secret_format.hash_secret(secret),
        secret_hint=secret_format.hint(secret),
        permissions=["event.send"],
        **fields,
    )
    return row, secret


class Store:
    """The credential cache as the verifier sees it: one record object per id, replaced on a change."""

    def __init__(self, row: Credential) -> None:
        self.row: Credential | None = row

    async def __call__(self, credential_id: str) -> Credential | None:
        return self.row if self.row is not None and self.row.id == credential_id else None

    def changed(self, **fields: object) -> None:
        assert self.row is not None
        self.row = Credential(**{**self.row.model_dump(), **fields})


async def check(
    secret: str, store: Store, memo: opaque_secret.VerifiedSecrets, now: datetime = NOW
) -> Principal | Refusal:
    presented = PresentedCredential(secret, Transport.BEARER)
    return await opaque_secret.OpaqueSecretVerifier(store, frozenset(), memo).verify(presented, now)


async def test_c5_a_verified_secret_is_answered_with_the_same_principal() -> None:
    row, secret = record()
    store, memo = Store(row), opaque_secret.VerifiedSecrets()
    first = await check(secret, store, memo)
    assert isinstance(first, Principal)
    assert await check(secret, store, memo) is first, "the remembered principal object is reused"
    assert len(memo) == 1
    wrong = secret[:30] + ("A" if secret[30] != "A" else "B") + secret[31:]
    assert isinstance(await check(wrong, store, memo), Refusal)
    assert len(memo) == 1, "refusals are never remembered"


async def test_s6_deactivation_and_expiry_are_seen_on_the_next_call() -> None:
    row, secret = record()
    store, memo = Store(row), opaque_secret.VerifiedSecrets()
    assert isinstance(await check(secret, store, memo), Principal)
    store.changed(deactivated_at=NOW)
    refused = await check(secret, store, memo)
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.CREDENTIAL_DEACTIVATED
    # A record changed in place (the store never does this; the check does not depend on it).
    row, secret = record(expires_at=NOW + timedelta(hours=1))
    store = Store(row)
    assert isinstance(await check(secret, store, memo), Principal)
    row.deactivated_at = NOW
    assert isinstance(await check(secret, store, memo), Refusal)
    row.deactivated_at = None
    assert isinstance(await check(secret, store, memo), Principal)
    expired = await check(secret, store, memo, NOW + timedelta(hours=2))
    assert isinstance(expired, Refusal)
    assert expired.reason == reasons.CREDENTIAL_EXPIRED


async def test_c5_a_rotation_refuses_the_old_secret_once_its_overlap_ends() -> None:
    row, old_secret = record()
    store, memo = Store(row), opaque_secret.VerifiedSecrets()
    assert isinstance(await check(old_secret, store, memo), Principal)
    new_secret = secret_format.mint(CredentialKind.API_KEY, row.id)
    store.changed(
        secret_hash=secret_format.hash_secret(new_secret),
        previous_secret_hash=row.secret_hash,
        previous_secret_valid_until=NOW + timedelta(minutes=5),
    )
    assert isinstance(await check(old_secret, store, memo), Principal), "still valid during the overlap"
    assert isinstance(await check(old_secret, store, memo), Principal)  # now answered from memory
    late = await check(old_secret, store, memo, NOW + timedelta(minutes=6))
    assert isinstance(late, Refusal)
    assert late.reason == reasons.CREDENTIAL_UNKNOWN
    # Rotated without an overlap: the old secret is refused at once.
    row, old_secret = record()
    store = Store(row)
    assert isinstance(await check(old_secret, store, memo), Principal)
    store.changed(secret_hash=secret_format.hash_secret(secret_format.mint(CredentialKind.API_KEY, row.id)))
    assert isinstance(await check(old_secret, store, memo), Refusal)


async def test_s3_a_changed_grant_gives_a_new_principal() -> None:
    row, secret = record()
    store, memo = Store(row), opaque_secret.VerifiedSecrets()
    first = await check(secret, store, memo)
    assert isinstance(first, Principal)
    store.changed(permissions=["event.send", "object.publish"])
    second = await check(secret, store, memo)
    assert isinstance(second, Principal)
    assert second.permissions == frozenset({"event.send", "object.publish"})
    store.row = None  # deleted
    gone = await check(secret, store, memo)
    assert isinstance(gone, Refusal)
    assert gone.reason == reasons.CREDENTIAL_UNKNOWN


async def test_the_memory_is_bounded() -> None:
    memo = opaque_secret.VerifiedSecrets(max_entries=3)
    for _ in range(5):
        row, secret = record()
        assert isinstance(await check(secret, Store(row), memo), Principal)
    assert len(memo) == 3


def test_a_principal_message_is_built_once_per_principal_object() -> None:
    from watchword.api.convert import PrincipalMessages, principal_to_proto

    messages = PrincipalMessages(max_entries=2)
    principal = Principal(
        id="p", kind=CredentialKind.API_KEY, transport=Transport.BEARER, organization_id="o"
    )
    assert messages.get(principal) is messages.get(principal)
    assert messages.get(principal) == principal_to_proto(principal)
    changed = replace(principal, organization_id="other")
    assert messages.get(changed).organization_id == "other"
    for index in range(3):
        messages.get(replace(principal, id=str(index)))
    assert len(messages._entries) == 2
