"""The README and the docs/ site tell the truth: their reason codes, settings, RPCs and feature tables
match the code, their commands run against a real server, and every relative link resolves."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchword.api.errors import ERROR_REASONS
from watchword.config import Settings
from watchword.reasons import OUTBOUND_REASONS, REASONS
from watchword.v1 import admin_pb2, auth_pb2

from support.paths import ROOT
from support.server import WatchwordProcess

DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
CATALOGUE = ROOT.parent / "shared" / "reference" / "CATALOGUE.md"


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert ".venv/bin/watchword serve" in first_block
    assert "bash .ci/run" in first_block
    assert (ROOT / ".ci" / "run").is_file()


def test_readme_is_a_front_page() -> None:
    assert len(README.splitlines()) <= 250


# ---- reason codes: docs/reference/reason-codes.md ----


def test_every_reason_code_is_documented_exactly() -> None:
    reasons = page("reference/reason-codes.md")
    for code, meaning in {**REASONS, **ERROR_REASONS}.items():
        assert f"| `{code}` | {meaning} |" in reasons, f"row for {code} is missing or stale"
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", reasons, re.MULTILINE))
    stale = documented - set(REASONS) - set(ERROR_REASONS) - set(OUTBOUND_REASONS)
    assert not stale, f"docs/reference/reason-codes.md documents codes the code no longer has: {stale}"


def test_every_outbound_reason_is_documented_exactly() -> None:
    reasons = page("reference/reason-codes.md")
    for code, meaning in OUTBOUND_REASONS.items():
        assert f"| `{code}` | {meaning} |" in reasons, code


def test_the_reason_rows_regenerate_with_the_documented_commands() -> None:
    reasons = page("reference/reason-codes.md")
    (commands,) = fenced_blocks(reasons.split("## Regenerating the rows", 1)[1], "sh")
    output = run_bash(commands, {})
    rows = output.splitlines()
    assert len(rows) == len(REASONS) + len(ERROR_REASONS) + len(OUTBOUND_REASONS)
    for row in rows:
        assert row in reasons, row


# ---- settings: docs/reference/settings.md ----

FILE_ONLY = {"issuers", "routes"}  # lists of tables: no environment variable can express them


def test_every_setting_is_documented() -> None:
    settings = page("reference/settings.md")
    for name in Settings.model_fields:
        where = "(file only)" if name in FILE_ONLY else f"`WATCHWORD_{name.upper()}`"
        assert f"| `{name}` | {where} |" in settings
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \| ", settings, re.MULTILINE))
    assert documented == set(Settings.model_fields), documented ^ set(Settings.model_fields)


# ---- RPCs: docs/reference/rpcs.md ----


def test_every_rpc_is_documented_and_no_other() -> None:
    rpcs = page("reference/rpcs.md")
    services = [auth_pb2.DESCRIPTOR.services_by_name["AuthService"]]
    services.append(admin_pb2.DESCRIPTOR.services_by_name["AdminService"])
    methods = {method.name for service in services for method in service.methods}
    first_cells = re.findall(r"^\| (`[A-Z].*?) \| ", rpcs, re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Za-z]+)[(`]", cell)}
    assert documented == methods, documented ^ methods
    assert "until #" not in rpcs, "a served RPC documented as not served yet"


# ---- the feature table: README.md and docs/reference/features.md ----

CATALOGUE_IDS = [
    *(f"C{n}" for n in range(1, 11)),
    *(f"T{n}" for n in range(1, 8)),
    *(f"S{n}" for n in range(1, 9)),
    *(f"I{n}" for n in range(1, 8)),
    *(f"O{n}" for n in range(1, 7)),
    *(f"E{n}" for n in range(1, 5)),
]
NOT_YET_BUILT: set[str] = set()


def test_catalogue_ids_are_the_ones_the_catalogue_lists() -> None:
    # The catalogue sits beside the clone in CI; a clone elsewhere relies on the list above.
    if CATALOGUE.is_file():
        listed = set(re.findall(r"\*\*([CTSIOE]\d+)\b", CATALOGUE.read_text(encoding="utf-8")))
        assert listed == set(CATALOGUE_IDS)


@pytest.mark.parametrize("where", ["README.md", "docs/reference/features.md"])
def test_feature_table_names_every_catalogue_id(where: str) -> None:
    text = (ROOT / where).read_text(encoding="utf-8")
    for requirement in CATALOGUE_IDS:
        row = re.search(rf"^\| {requirement} \| .+ \| (.+) \|$", text, re.MULTILINE)
        assert row, (where, requirement)
        built = not row.group(1).startswith("not yet built")
        assert built == (requirement not in NOT_YET_BUILT), (where, requirement, row.group(0))


# ---- links ----

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "clients" / "python" / "README.md", *sorted(DOCS.rglob("*.md"))]


def without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(markdown: Path) -> set[str]:
    """The ids MkDocs (Python-Markdown's toc) and GitHub give the headings: one slug rule for both here."""
    text = without_fences(markdown.read_text(encoding="utf-8"))
    headings = re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)
    return {slug(heading) for heading in headings}


def without_fences(text: str) -> str:
    return re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[\s]+", "-", text)


@pytest.mark.parametrize("markdown", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(markdown: Path) -> None:
    for target in LINK.findall(without_code(markdown.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # https://, mailto: ...
        path, _, anchor = target.partition("#")
        resolved = (markdown.parent / path).resolve() if path else markdown
        assert resolved.exists(), f"{markdown.relative_to(ROOT)}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{markdown.relative_to(ROOT)}: no heading for {target}"


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for markdown in DOCS.rglob("*.md"):
        assert markdown.relative_to(DOCS).as_posix() in nav, markdown


REPOSITORY_PATH = re.compile(r"\b((?:bench|tests|clients|server|proto|requirements)/[\w./-]+\.\w+)")


def test_every_repository_file_the_docs_name_exists() -> None:
    """Paths such as `bench/latency.py` or `tests/test_sigterm.py` in the text, stale once a file moves."""
    for markdown in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        text = markdown.read_text(encoding="utf-8")
        for path in set(REPOSITORY_PATH.findall(text)):
            if "*" in path or "<" in path:
                continue
            assert (ROOT / path).exists(), f"{markdown.relative_to(ROOT)} names {path}, which does not exist"


# ---- commands: the README's tour, the quick start and the outbound guide, against a real server ----


def run_bash(script: str, env: dict[str, str]) -> str:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("WATCHWORD_")}
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=600,  # each `watchword admin` call starts a Python process: slow on a busy machine
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def runnable(text: str, server: WatchwordProcess) -> str:
    """The sh blocks of a page as one script, on the test server instead of 127.0.0.1:50051. The blocks
    that install (pip, venv, .ci/run) are left out: the suite runs in the environment they make; so are
    Docker's (tests/test_lock.py checks the Dockerfile's install)."""
    skipped = ("pip install", "bash .ci/run", "docker ")
    blocks = [b for b in fenced_blocks(text, "sh") if not any(word in b for word in skipped)]
    script = "\n".join(blocks).replace("127.0.0.1:50051", server.address)
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{server.http_port}")
    return re.sub(r"^export WATCHWORD_ADMIN_TOKEN=wwad_\.\.\..*$", "", script, flags=re.MULTILINE)


def parsed(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None  # one line of grpcurl's indented JSON


def check_expected_outputs(script: str, output: str) -> int:
    """Each `# {...}` or `# [...]` comment is a line the commands print; `# "x": {"reason": "r"...`, a
    reason they print."""
    printed = [parsed(line) for line in output.splitlines() if line[:1] in "{["]
    checked = 0
    for comment in re.findall(r"^# ([\[{].*)$", script, re.MULTILINE):
        assert json.loads(comment) in printed, f"expected {comment}\nprinted:\n{output}"
        checked += 1
    for reason in re.findall(r'^# "\w+": \{"reason": "(\w+)"', script, re.MULTILINE):
        assert f'"reason": "{reason}"' in output, f"expected the reason {reason}\nprinted:\n{output}"
        checked += 1
    return checked


@pytest.fixture
def docs_server(tmp_path: Path) -> Iterator[WatchwordProcess]:
    with WatchwordProcess(tmp_path / "data") as process:
        yield process


def server_env(server: WatchwordProcess) -> dict[str, str]:
    return {"WATCHWORD_ADMIN_TOKEN": server.admin_token, "WATCHWORD_ADDRESS": server.address}


def test_the_readme_tour_runs(docs_server: WatchwordProcess) -> None:
    script = runnable(README, docs_server)
    assert check_expected_outputs(script, run_bash(script, server_env(docs_server))) == 2


def test_the_quick_start_and_the_guides_that_continue_it_run(docs_server: WatchwordProcess) -> None:
    """The outbound and issuing guides continue the quick start, in the same shell."""
    quick_start = runnable(page("guides/quick-start.md"), docs_server)
    outbound = runnable(page("guides/outbound.md"), docs_server)
    issuing = runnable(page("guides/issuing-tokens.md"), docs_server)
    introspection = runnable(page("guides/introspection.md"), docs_server)
    output = run_bash("\n".join([quick_start, outbound, issuing, introspection]), server_env(docs_server))
    assert check_expected_outputs(quick_start, output) == 5
    assert check_expected_outputs(outbound, output) == 1
    assert check_expected_outputs(issuing, output) == 2
    assert check_expected_outputs(introspection, output) == 3
    assert "whsec_" in output
