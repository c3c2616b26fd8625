"""The published secret patterns (`hygiene.patterns`) match exactly what `secret_format` mints, and the
docs page and the machine-readable file say the same (C2, C3, C5, C6, C9 secrets, admin tokens)."""

from __future__ import annotations

import json
import re

import pytest

from watchword import secret_format
from watchword.hygiene import patterns
from watchword.identify import kinds

from support.paths import ROOT

MINTABLE = [row for row in kinds.KINDS if row.prefix]


def minted(kind: kinds.KindFacts) -> str:
    return secret_format.mint(kind.kind, secret_format.new_credential_id())


@pytest.mark.parametrize("row", MINTABLE, ids=lambda row: row.cli_name)
def test_c5_every_minted_secret_matches_its_kinds_pattern_only(row: kinds.KindFacts) -> None:
    others = [re.compile(patterns.scan_pattern(other.prefix)) for other in MINTABLE if other is not row]
    exact = re.compile(patterns.body_pattern(row.prefix))
    scan = re.compile(patterns.scan_pattern(row.prefix))
    for _ in range(500):
        secret = minted(row)
        assert exact.fullmatch(secret), secret
        assert scan.search(f'api_key = "{secret}"\n').group(0) == secret
        assert not any(other.search(secret) for other in others)


def near_misses(secret: str) -> list[str]:
    body, checksum = secret[:-6], secret[-6:]
    return [
        secret[:-1],  # one short
        secret + "A",  # one long: a longer word
        "x" + secret,  # preceded by a letter
        secret[:5] + secret[6:],  # an id one short
        secret.replace("_", "-"),  # other separators
        secret[:20] + "+" + secret[21:],  # outside base62
        body + "5" + checksum[1:],  # a checksum no CRC32 gives (above 62^6 range of CRC32)
        "ww" + "zz" + secret[4:],  # a prefix Watchword never mints
        secret.upper(),  # the prefix in capitals
    ]


@pytest.mark.parametrize("row", MINTABLE, ids=lambda row: row.cli_name)
def test_near_misses_do_not_match(row: kinds.KindFacts) -> None:
    scan = re.compile(patterns.scan_pattern(row.prefix))
    for miss in near_misses(minted(row)):
        assert scan.search(miss) is None, miss
        assert secret_format.parse(miss) is None, miss


def test_c5_a_mistyped_secret_matches_the_pattern_but_not_the_checksum() -> None:
    """What the pattern cannot tell, the checksum does: the report endpoint parses before any lookup."""
    secret = minted(kinds.facts(kinds.CredentialKind.API_KEY))
    flipped = secret[:30] + ("A" if secret[30] != "A" else "B") + secret[31:]
    assert re.fullmatch(patterns.body_pattern("wwak"), flipped)
    assert secret_format.parse(flipped) is None


def test_the_machine_readable_file_is_current() -> None:
    path = ROOT / "docs" / "reference" / "secret-patterns.json"
    regenerate = (
        ".venv/bin/python -c 'from watchword.hygiene import patterns; print(patterns.document(), end=\"\")'"
    )
    assert path.read_text(encoding="utf-8") == patterns.document(), f"regenerate: {regenerate} > {path}"
    assert {entry["prefix"] for entry in json.loads(patterns.document())["patterns"]} == {
        f"{row.prefix}_" for row in MINTABLE
    }


def test_the_docs_page_lists_every_pattern() -> None:
    page = (ROOT / "docs" / "reference" / "secret-formats.md").read_text(encoding="utf-8")
    for entry in patterns.catalogue():
        row = f"| `{entry['type']}` | `{entry['prefix']}` | `{entry['regex']}` |"
        assert row in page, row
    assert len(re.findall(r"^\| .+ \| `watchword_", page, re.MULTILINE)) == len(MINTABLE)
