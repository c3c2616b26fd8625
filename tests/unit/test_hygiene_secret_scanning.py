"""Leaked-key reports in GitHub's secret scanning partner format (`hygiene.secret_scanning`), with signing
keys made in the test and the real store (C5 API keys, and every other kind Watchword mints)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from watchword import reasons, secret_format
from watchword.domain import CredentialKind
from watchword.hygiene.secret_scanning import (
    FALSE_POSITIVE,
    MAX_ENTRIES,
    TRUE_POSITIVE,
    Finding,
    LeakReports,
    PublicKeys,
    ReportRefused,
    token_hash,
)
from watchword.store import models
from watchword.store.change_feed import Change, ChangeKind
from watchword.store.repository import Store

KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def key_document(keys: dict[str, ec.EllipticCurvePrivateKey]) -> str:
    entries = [
        {"key_identifier": kid, "key": public_pem(key), "is_current": True} for kid, key in keys.items()
    ]
    return json.dumps({"public_keys": entries})


def sign(key: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def report(*tokens: str, type_: str = "watchword_api_key") -> bytes:
    entries = [
        {
            "token": token,
            "type": type_,
            "url": "https://github.com/octo/repo/blob/abc/app.py",
            "source": "content",
        }
        for token in tokens
    ]
    return json.dumps(entries).encode()


class Scanner:
    """A secret scanner: its signing key, and the key document the operator configured."""

    def __init__(self, path: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.path = path
        path.write_text(key_document({KEY_ID: self.key}), encoding="utf-8")

    def headers(self, body: bytes) -> tuple[str, str]:
        return KEY_ID, sign(self.key, body)


@pytest.fixture
def scanner(tmp_path: Path) -> Scanner:
    return Scanner(tmp_path / "scanner-keys.json")


async def new_credential(store: Store, organization_id: str, kind: CredentialKind = CredentialKind.API_KEY):
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(kind, credential_id)
    row = models.Credential(
        id=credential_id,
        kind=int(kind),
        organization_id=organization_id,
        name="leaky",
        secret_hash=secret_format.hash_secret(secret),
        secret_hint=secret_format.hint(secret),
    )
    await store.add_credential(row)
    return credential_id, secret


def reports_for(
    store: Store, scanner: Scanner, action: str = "deactivate"
) -> tuple[LeakReports, list[Finding]]:
    audited: list[Finding] = []
    return LeakReports(store, PublicKeys(scanner.path), action, audited.append), audited  # type: ignore[arg-type]


async def test_c5_a_leaked_key_is_deactivated_and_announced(store: Store, scanner: Scanner) -> None:
    organization = (await store.create_organization("acme")).id
    credential_id, secret = await new_credential(store, organization)
    announced: list[Change] = []

    async def observe(change: Change) -> None:
        announced.append(change)

    store.change_observers.append(observe)
    leaks, audited = reports_for(store, scanner)
    body = report(secret)
    answer = await leaks.receive(body, *scanner.headers(body))
    assert answer == [
        {"token_hash": token_hash(secret), "token_type": "watchword_api_key", "label": TRUE_POSITIVE}
    ]
    row = await store.get_credential(credential_id)
    assert row.deactivated_at is not None
    assert row.leak_reported_at is not None
    # The change feed's event: every replica's caches drop the credential, as for DeactivateCredential.
    assert [(c.kind, c.ids) for c in announced] == [(ChangeKind.CREDENTIAL, (credential_id,))]
    assert [finding.outcome for finding in audited] == ["deactivated"]
    assert leaks.stats.tokens == {"deactivated": 1}
    assert leaks.stats.reports == {"accepted": 1}
    # Reported again (the scanner retries): nothing more to do, still a true positive.
    again = await leaks.receive(body, *scanner.headers(body))
    assert again[0]["label"] == TRUE_POSITIVE
    assert audited[-1].outcome == "already_deactivated"


@pytest.mark.parametrize(
    "kind",
    [
        CredentialKind.APPLICATION_SECRET,
        CredentialKind.STATIC_TOKEN,
        CredentialKind.CONNECTOR,
        CredentialKind.OAUTH_CLIENT,
        CredentialKind.TENANT_SIGNING_SECRET,
    ],
)
async def test_every_minted_kind_is_found_by_its_secret(
    store: Store, scanner: Scanner, kind: CredentialKind
) -> None:
    organization = (await store.create_organization("acme")).id
    credential_id, secret = await new_credential(store, organization, kind)
    leaks, _ = reports_for(store, scanner)
    body = report(secret, type_="watchword_secret")
    assert (await leaks.receive(body, *scanner.headers(body)))[0]["label"] == TRUE_POSITIVE
    assert (await store.get_credential(credential_id)).deactivated_at is not None


async def test_c5_flag_mode_records_the_report_and_keeps_the_key_working(
    store: Store, scanner: Scanner
) -> None:
    organization = (await store.create_organization("acme")).id
    credential_id, secret = await new_credential(store, organization)
    leaks, audited = reports_for(store, scanner, "flag")
    body = report(secret)
    assert (await leaks.receive(body, *scanner.headers(body)))[0]["label"] == TRUE_POSITIVE
    row = await store.get_credential(credential_id)
    assert row.deactivated_at is None
    assert row.leak_reported_at is not None
    assert [finding.outcome for finding in audited] == ["flagged"]


async def test_false_positives_change_nothing(store: Store, scanner: Scanner) -> None:
    """A bad checksum, an unknown id, a kind that is not the credential's, and a well-formed secret naming
    another organization's credential with a secret that is not its own: false positives, nothing changed."""
    victim_org = (await store.create_organization("victim")).id
    victim_id, victim_secret = await new_credential(store, victim_org)
    body_part = f"wwak_{victim_id}_{'A' * 32}"
    forged = body_part + secret_format._checksum(body_part)  # valid checksum, the victim's id, wrong secret
    assert secret_format.parse(forged) is not None
    other_kind = secret_format.mint(CredentialKind.STATIC_TOKEN, victim_id)  # the victim's id, another kind
    mistyped = victim_secret[:-1] + ("A" if victim_secret[-1] != "A" else "B")
    unknown = secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())
    leaks, audited = reports_for(store, scanner)
    body = report(forged, other_kind, mistyped, unknown, "not a token at all")
    answer = await leaks.receive(body, *scanner.headers(body))
    assert [entry["label"] for entry in answer] == [FALSE_POSITIVE] * 5
    row = await store.get_credential(victim_id)
    assert row.deactivated_at is None
    assert row.leak_reported_at is None
    assert all(finding.credential is None for finding in audited)
    assert leaks.stats.tokens == {"false_positive": 5}


async def test_a_previous_secret_still_in_its_overlap_is_a_leak(store: Store, scanner: Scanner) -> None:
    organization = (await store.create_organization("acme")).id
    credential_id, old_secret = await new_credential(store, organization)
    new_secret = secret_format.mint(CredentialKind.API_KEY, credential_id)
    until = datetime.now(UTC) + timedelta(hours=1)
    await store.rotate_credential(credential_id, secret_format.hash_secret(new_secret), None, until)
    leaks, _ = reports_for(store, scanner)
    body = report(old_secret)
    assert (await leaks.receive(body, *scanner.headers(body)))[0]["label"] == TRUE_POSITIVE
    assert (await store.get_credential(credential_id)).deactivated_at is not None


def refused(leaks: LeakReports, body: bytes, key_id: str, signature: str):
    async def receive() -> ReportRefused:
        with pytest.raises(ReportRefused) as caught:
            await leaks.receive(body, key_id, signature)
        return caught.value

    return receive()


async def test_bad_reports_are_refused_whole(store: Store, scanner: Scanner) -> None:
    organization = (await store.create_organization("acme")).id
    credential_id, secret = await new_credential(store, organization)
    leaks, audited = reports_for(store, scanner)
    body = report(secret)
    stranger = ec.generate_private_key(ec.SECP256R1())
    other_body = report(secret, type_="other")
    cases = {
        reasons.LEAK_REPORT_UNSIGNED: (body, "", ""),
        reasons.LEAK_REPORT_KEY_UNKNOWN: (body, "some-other-key", sign(scanner.key, body)),
        reasons.LEAK_REPORT_SIGNATURE_INVALID: (body, KEY_ID, sign(stranger, body)),
    }
    for reason, (sent, key_id, signature) in cases.items():
        assert (await refused(leaks, sent, key_id, signature)).reason == reason
    # Signed for another body; not base64; the right key over a truncated body.
    assert (await refused(leaks, body, KEY_ID, sign(scanner.key, other_body))).status == 401
    assert (await refused(leaks, body, KEY_ID, "%%%")).reason == reasons.LEAK_REPORT_SIGNATURE_INVALID
    assert (await refused(leaks, body[:-1], *scanner.headers(body))).status == 401
    malformed = [
        b"not json",
        b"{}",
        b"[]",
        json.dumps([{"token": secret}] * (MAX_ENTRIES + 1)).encode(),
        json.dumps([secret]).encode(),
        json.dumps([{"token": 5}]).encode(),
        json.dumps([{"type": "no token"}]).encode(),
        json.dumps([{"token": secret, "url": "x" * 5000}]).encode(),
        b"[" * 100_000,  # nesting deeper than the parser goes
        b"\xff\xfe[",  # not UTF-8
    ]
    for sent in malformed:
        found = await refused(leaks, sent, *scanner.headers(sent))
        assert (found.status, found.reason) == (400, reasons.LEAK_REPORT_MALFORMED), sent[:40]
    row = await store.get_credential(credential_id)
    assert row.deactivated_at is None
    assert row.leak_reported_at is None
    assert audited == []
    assert leaks.stats.reports[reasons.LEAK_REPORT_MALFORMED] == len(malformed)


async def test_the_key_document_is_read_again_when_it_changes(store: Store, scanner: Scanner) -> None:
    """The scanner rotates its key: the operator replaces the file, no restart."""
    organization = (await store.create_organization("acme")).id
    _, secret = await new_credential(store, organization)
    leaks, _ = reports_for(store, scanner)
    rotated = ec.generate_private_key(ec.SECP256R1())
    scanner.path.write_text(key_document({"rotated-key": rotated, KEY_ID: scanner.key}), encoding="utf-8")
    body = report(secret)
    assert (await leaks.receive(body, "rotated-key", sign(rotated, body)))[0]["label"] == TRUE_POSITIVE
    # A broken file keeps the keys read before (and says so in the log).
    scanner.path.write_text("{broken", encoding="utf-8")
    assert (await leaks.receive(body, "rotated-key", sign(rotated, body)))[0]["label"] == TRUE_POSITIVE


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "{}",
        '{"public_keys": [{"key_identifier": "k"}]}',
        json.dumps({"public_keys": [{"key_identifier": "k", "key": "-----BEGIN PUBLIC KEY-----\nAAAA"}]}),
    ],
)
def test_an_unusable_key_document_is_refused_at_start(tmp_path: Path, document: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ValueError, match="secret_scanning_public_keys_file"):
        PublicKeys(path)


def test_keys_of_another_curve_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(key_document({"p384": ec.generate_private_key(ec.SECP384R1())}), encoding="utf-8")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="P-256"):
        PublicKeys(path)
