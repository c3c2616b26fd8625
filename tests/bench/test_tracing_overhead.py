"""The tracing overhead benchmark runs in CI, briefly, so it cannot rot (no timing asserted: the machine
running the suite is shared; figures in docs/operations/tracing.md)."""

from __future__ import annotations

import math

from support.bench_run import bench_output

CASES = ["tracing off", "on, sampler always_off", "on, every check exported"]


def test_tracing_overhead_benchmark_prints_each_case_with_its_ratio_to_tracing_off() -> None:
    lines = bench_output("tracing_overhead.py", "--checks", "200", "--rounds", "1").splitlines()
    assert lines[1].split() == ["case", "us/check", "ratio"]
    rows = {line[:34].strip(): line[34:].split() for line in lines[2:5]}
    assert list(rows) == CASES
    assert rows["tracing off"][1] == "1.00"
    for per_check, ratio in rows.values():
        assert math.isfinite(float(per_check))
        assert float(per_check) > 0
        assert float(ratio) > 0
    # Each sampled check exports its server span and the extract, identify and decide spans.
    assert lines[5] == "spans exported per sampled check: 4.0"
