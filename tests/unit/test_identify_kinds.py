"""The kinds table (identify/kinds.py): one row per credential kind (C1-C10 and the stored-only kinds),
and the facts derived from it are the ones the code said before the table, and the README says."""

from __future__ import annotations

import re

from watchword import cli, secret_format
from watchword.domain import CredentialKind, Transport
from watchword.identify import kinds

from support.paths import ROOT

_DIRECT = {Transport.BEARER, Transport.BARE, Transport.BATCH_ENTRY}
_BEARER_TOKEN = _DIRECT | {Transport.COOKIE}

# What the code said before the table, fact by fact (secret_format.PREFIXES, new_credential's sets,
# each verifier's ACCEPTED_TRANSPORTS, cli.KIND_NAMES).
BEFORE_PREFIXES = {
    CredentialKind.APPLICATION_SECRET: "wwas",
    CredentialKind.STATIC_TOKEN: "wwst",
    CredentialKind.API_KEY: "wwak",
    CredentialKind.CONNECTOR: "wwcs",
    CredentialKind.OAUTH_CLIENT: "wwoc",
    CredentialKind.TENANT_SIGNING_SECRET: "wwts",
    CredentialKind.ADMIN_TOKEN: "wwad",
}
BEFORE_GRANT_KINDS = {
    CredentialKind.STATIC_TOKEN,
    CredentialKind.API_KEY,
    CredentialKind.CONNECTOR,
    CredentialKind.TENANT_SIGNING_SECRET,
    CredentialKind.OAUTH_CLIENT,
}
BEFORE_EVENT_FILTER_KINDS = {CredentialKind.STATIC_TOKEN, CredentialKind.API_KEY}
BEFORE_SEALED_KINDS = {CredentialKind.CONNECTOR, CredentialKind.TENANT_SIGNING_SECRET}
BEFORE_TRANSPORTS = {
    CredentialKind.EXTERNAL_JWT: _BEARER_TOKEN,
    CredentialKind.APPLICATION_SECRET: _DIRECT,
    CredentialKind.STATIC_TOKEN: _BEARER_TOKEN,
    CredentialKind.TENANT_JWT: _BEARER_TOKEN,
    CredentialKind.API_KEY: _DIRECT | {Transport.BASIC},
    CredentialKind.CONNECTOR: {Transport.HEADER_PAIR, Transport.QUERY, Transport.BARE},
    CredentialKind.SUBJECT_JWT: {Transport.HEADER_PAIR, Transport.QUERY} | _DIRECT - {Transport.BEARER},
    CredentialKind.WATCHWORD_TOKEN: _BEARER_TOKEN,
    CredentialKind.OAUTH_CLIENT: {Transport.BASIC, Transport.FORM},
    CredentialKind.TENANT_SIGNING_SECRET: set(),
    CredentialKind.ADMIN_TOKEN: set(),
}
BEFORE_CLI_NAMES = {
    "application-secret": 2,
    "static-token": 3,
    "api-key": 5,
    "connector": 6,
    "tenant-signing-secret": 10,
    "oauth-client": 9,
    "admin-token": 11,
}


def test_every_credential_kind_has_exactly_one_row() -> None:
    assert sorted(row.kind for row in kinds.KINDS) == sorted(CredentialKind)
    assert set(kinds.FACTS) == set(CredentialKind)


def test_c1_to_c10_rows_name_their_catalogue_id() -> None:
    named = {row.catalogue_id: row.kind for row in kinds.KINDS if row.catalogue_id}
    assert sorted(named) == sorted(f"C{n}" for n in range(1, 11))
    assert all(named[f"C{kind.value}"] is kind for kind in CredentialKind if kind.value <= 9)
    assert named["C10"] is CredentialKind.CLIENT_CERTIFICATE


# C10, added after the table: secretless, made by CreateCredential with its service identity.
C10 = CredentialKind.CLIENT_CERTIFICATE


def test_derived_facts_are_what_the_code_said_before_the_table() -> None:
    assert kinds.PREFIXES == BEFORE_PREFIXES
    assert secret_format.PREFIXES == BEFORE_PREFIXES
    assert set(BEFORE_PREFIXES) | {C10} == kinds.MINTABLE
    assert BEFORE_GRANT_KINDS | {C10} == kinds.CARRY_PERMISSIONS
    assert BEFORE_EVENT_FILTER_KINDS | {C10} == kinds.CARRY_EVENT_FILTERS
    assert kinds.SEALED == BEFORE_SEALED_KINDS
    assert {C10} == kinds.SECRETLESS
    assert BEFORE_TRANSPORTS | {C10: {Transport.CLIENT_CERTIFICATE}} == kinds.TRANSPORTS
    assert cli.KIND_NAMES == BEFORE_CLI_NAMES | {"client-certificate": 12}


def test_mintable_kinds_have_a_prefix_of_the_secret_format_and_a_cli_name() -> None:
    for row in kinds.KINDS:
        assert row.mintable == bool(row.cli_name), row
        assert bool(row.prefix) == (row.mintable and not row.secretless), row
        if row.prefix:  # secret_format reads exactly four characters `ww..` before the id
            assert re.fullmatch(r"ww[a-z]{2}", row.prefix), row
    assert len(set(kinds.PREFIXES.values())) == len(kinds.PREFIXES)
    assert len(kinds.CLI_NAMES) == len(kinds.MINTABLE)


def test_only_mintable_kinds_carry_permissions_event_filters_or_a_sealed_secret() -> None:
    assert kinds.CARRY_PERMISSIONS | kinds.CARRY_EVENT_FILTERS | kinds.SEALED <= kinds.MINTABLE
    assert kinds.CARRY_EVENT_FILTERS <= kinds.CARRY_PERMISSIONS


def _table(header: str) -> list[list[str]]:
    """The rows of the Markdown table under `header` in the README (or the docs, once moved there)."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        if header in lines:
            start = lines.index(header) + 2
            rows = []
            for line in lines[start:]:
                if not line.startswith("|"):
                    break
                rows.append([cell.strip() for cell in line.strip("|").split("|")])
            return rows
    raise AssertionError(f"no table {header!r} in the README or docs/")


def test_prefixes_and_mintable_kinds_are_the_documented_ones() -> None:
    documented = {prefix.strip("`"): text for prefix, text in _table("| prefix | kind |")}
    assert set(documented) == set(kinds.PREFIXES.values())
    for kind, prefix in kinds.PREFIXES.items():
        label = kinds.facts(kind).cli_name.replace("-", " ")
        assert documented[prefix].lower().startswith(label), (prefix, documented[prefix])


def test_transports_and_prefixes_are_the_documented_ones_for_c1_to_c10() -> None:
    # T7 is a batch entry carrying one of the others, so the table's T1-T6 are compared.
    by_id = {row.catalogue_id: row for row in kinds.KINDS if row.catalogue_id}
    for kind_cell, looks_like, accepted_over in _table("| kind | looks like | accepted over |"):
        row = by_id[kind_cell.split()[0]]
        documented = {Transport(int(n)) for n in re.findall(r"\bT([1-6])\b", accepted_over)}
        assert documented == {t for t in row.transports if t.value <= 6}, kind_cell
        assert (f"`{row.prefix}_" in looks_like) == bool(row.prefix), kind_cell
