"""The observe layer's per-call cost benchmark runs in CI, briefly, so it cannot rot (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys

from support.paths import ROOT


def test_observe_overhead_benchmark_prints_its_three_cases() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "observe_overhead.py"), "--calls", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {line[:34].strip(): line.split()[-2:] for line in result.stdout.splitlines()[2:]}
    assert list(rows) == ["bare", "interceptor", "interceptor + decision + audit"]
    assert rows["bare"][1] == "0.00"
    bare = float(rows["bare"][0])
    for per_call, added in rows.values():
        assert float(per_call) > 0
        assert abs(float(per_call) - bare - float(added)) < 0.02, "added is the difference to bare"
