"""bench/decide.py runs in CI, briefly, so it cannot rot. No timing is asserted here."""

from __future__ import annotations

import subprocess
import sys

from support.paths import ROOT

NAME_WIDTH = 46  # bench/decide.py's case column


def test_decide_benchmark_prints_the_engine_and_batch_rows_with_ratios() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "decide.py"),
            *("--decisions", "2000", "--batch", "20", "--batches", "2", "--calls", "20", "--rounds", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Rule engine alone: 2000 decisions")
    assert any(line.startswith("Through a real server: 2 batches of 20 entries") for line in lines)
    assert sum(line.split()[:4] == ["case", "per", "second", "ratio"] for line in lines) == 2
    expected = {
        "no-op Python call, same arguments",
        "decide(), every kind x action x resource",
        "no-op RPC (Health/Check), calls/s",
        "Authorize, 1 entry per call, entries/s",
        "AuthorizeBatch, entries/s",
    }
    rows = {
        name: line[NAME_WIDTH:].split() for line in lines if (name := line[:NAME_WIDTH].strip()) in expected
    }
    assert set(rows) == expected, result.stdout
    for name in expected:
        rate, ratio = (float(value) for value in rows[name])
        assert rate > 0
        assert ratio > 0
        if name.startswith("no-op"):
            assert ratio == 1.0
