"""The soak and cache-memory benchmarks (issue #12, section 8) run here for seconds, so they cannot rot.
No memory figure is asserted (seconds say nothing about a slope); what is asserted cannot depend on
timing: no INTERNAL answer under churn, and every cache kept at its bound."""

from __future__ import annotations

import re

from support.bench_run import bench_output


def run(script: str, *args: str) -> str:
    return bench_output(script, *args)


def test_t7_a_short_soak_with_churn_answers_no_call_internal_and_prints_the_rss_slope() -> None:
    out = run("soak.py", "--seconds", "6", "--warmup", "2", "--rate", "40", "--sample-seconds", "0.5")
    assert "INTERNAL answers: 0" in out, out
    assert "RPC errors by status: {}" in out, out
    assert re.search(r"RSS slope after warm-up: [+-][0-9.]+ MiB/min over [0-9]+ samples", out), out
    answered = re.search(r"calls answered: ([0-9]+)", out)
    assert answered is not None
    assert int(answered.group(1)) == 240


def test_every_cache_stays_at_its_bound_when_filled_past_it() -> None:
    out = run("cache_memory.py", "--scale", "0.002")
    row_shape = re.compile(r"\s[0-9]+\s+[0-9]+\s+-?[0-9.]+$")  # name, bound, kept, MiB
    rows = [line.split() for line in out.splitlines()[2:] if row_shape.search(line)]
    assert len(rows) == 12, out
    for row in rows:
        bound, kept = int(row[-3]), int(row[-2])
        assert kept == bound, row
