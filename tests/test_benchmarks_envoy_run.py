"""E1 benchmark runs in CI, briefly, so it cannot rot: every row is printed with a rate. No speed asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    "(a) Envoy direct_response, no filter",
    "(b) ext_authz -> Watchword, C3 token",
    "(c) ext_authz -> always-allow server",
    "(d) Envoy jwt_authn, ES256 JWT",
    "(e) ext_authz -> Watchword, C8 ES256",
]
RATIOS = ["(b)/(c) Watchword vs always-allow", "(e)/(d) Watchword C8 vs jwt_authn"]


def test_e1_envoy_benchmark_prints_every_case_and_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "envoy_ext_authz.py"), "--duration", "1", "--connections", "4"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Envoy in front: wrk -t1 -c4 -d1s")
    rows = {line[:40].strip(): line.split()[-2:] for line in lines[2:]}
    for row in ROWS:
        rate, ratio = rows[row]
        assert float(rate) > 0, row
        assert float(ratio) > 0, row
    assert rows[ROWS[0]][1] == "1.00"
    for ratio in RATIOS:
        assert float(rows[ratio][-1]) > 0, ratio
