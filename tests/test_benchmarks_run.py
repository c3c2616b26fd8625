"""Benchmarks are code that runs in CI, briefly, so they cannot rot. No timing is asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_authenticate_benchmark_prints_a_ratio_per_credential_kind() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "authenticate.py"),
            "--calls",
            "60",
            "--concurrency",
            "4",
            "--rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Authenticate, warm cache")
    rows = {line[:34].strip(): line.split()[-1] for line in lines[2:]}
    assert rows["no-op baseline (Health/Check)"] == "1.00"
    cases = [name for name in rows if name != "no-op baseline (Health/Check)"]
    assert {name.split()[0] for name in cases} == {"C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"}
    for case in cases:
        assert float(rows[case]) > 0


def test_issue_token_benchmark_prints_a_ratio_per_grant() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "issue_token.py"),
            "--calls",
            "30",
            "--concurrency",
            "4",
            "--rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("IssueToken:")
    rows = {line[:34].strip(): line.split()[-1] for line in lines[2:]}
    assert rows["no-op baseline (Health/Check)"] == "1.00"
    assert float(rows["I1 API key exchange"]) > 0
    assert float(rows["I2 client credentials (post)"]) > 0
