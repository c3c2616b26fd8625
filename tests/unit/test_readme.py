"""The README tells the truth: its reason codes, settings and feature table match the code."""

from __future__ import annotations

import re

from watchword.api.errors import ERROR_REASONS
from watchword.config import Settings
from watchword.reasons import REASONS

from support.paths import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
CATALOGUE = ROOT.parent / "shared" / "reference" / "CATALOGUE.md"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert ".venv/bin/watchword serve" in first_block
    assert "bash .ci/run" in first_block
    assert (ROOT / ".ci" / "run").is_file()


def test_every_reason_code_is_documented_exactly() -> None:
    for code, meaning in {**REASONS, **ERROR_REASONS}.items():
        assert f"| `{code}` | {meaning} |" in README, f"README row for {code} is missing or stale"
    section = README.split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    from watchword.reasons import OUTBOUND_REASONS

    stale = documented - set(REASONS) - set(ERROR_REASONS) - set(OUTBOUND_REASONS)
    assert not stale, f"README documents codes the code no longer has: {stale}"


FILE_ONLY = {"issuers", "routes"}  # lists of tables: no environment variable can express them


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        where = "(file only)" if name in FILE_ONLY else f"`WATCHWORD_{name.upper()}`"
        assert f"| `{name}` | {where} |" in README


CATALOGUE_IDS = [
    *(f"C{n}" for n in range(1, 11)),
    *(f"T{n}" for n in range(1, 8)),
    *(f"S{n}" for n in range(1, 9)),
    *(f"I{n}" for n in range(1, 8)),
    *(f"O{n}" for n in range(1, 7)),
    *(f"E{n}" for n in range(1, 5)),
]


def test_catalogue_ids_are_the_ones_the_catalogue_lists() -> None:
    # The catalogue sits beside the clone in CI; a clone elsewhere relies on the list above.
    if CATALOGUE.is_file():
        listed = set(re.findall(r"\*\*([CTSIOE]\d+)\b", CATALOGUE.read_text(encoding="utf-8")))
        assert listed == set(CATALOGUE_IDS)


def test_feature_table_names_every_catalogue_id() -> None:
    for requirement in CATALOGUE_IDS:
        assert re.search(rf"^\| {requirement} \| .+ \| .+ \|$", README, re.MULTILINE), requirement


def test_every_outbound_reason_is_documented_exactly() -> None:
    from watchword.reasons import OUTBOUND_REASONS

    for code, meaning in OUTBOUND_REASONS.items():
        assert f"| `{code}` | {meaning} |" in README, code
