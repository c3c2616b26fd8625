"""Issue #8's benchmarks run in CI, briefly, so they cannot rot: each prints every row it promises.
No timing is asserted here (the machine running the suite is shared); figures: docs/performance.md."""

from __future__ import annotations

import math

from support.bench_run import bench_output

KINDS = {"C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"}
NOOP = "no-op baseline (Health/Check)"


def run(script: str, *args: str) -> list[str]:
    return bench_output(script, *args).splitlines()


def table(lines: list[str], title: str) -> dict[str, list[str]]:
    """The rows (name -> the figures after it) of the table under the first line starting with `title`."""
    start = next(index for index, line in enumerate(lines) if line.startswith(title))
    assert lines[start + 1].startswith("case")
    rows: dict[str, list[str]] = {}
    body = lines[start + 2 :]
    for index, line in enumerate(body):
        next_is_header = index + 1 < len(body) and body[index + 1].startswith("case")
        if not line.strip() or next_is_header or line.startswith("server memory"):
            break  # the end of the table: another table's title, or the memory line
        rows[line[:34].strip()] = line[34:].split()
    return rows


def finite(text: str) -> float:
    value = float(text)
    assert math.isfinite(value)
    return value


def test_authorize_benchmark_prints_a_ratio_per_credential_kind() -> None:
    lines = run("authorize.py", "--calls", "40", "--concurrency", "4", "--rounds", "1")
    rows = table(lines, "Authorize, warm cache")
    assert rows[NOOP][-1] == "1.00"
    assert {name.split()[0] for name in rows if name != NOOP} == KINDS
    for figures in rows.values():
        assert finite(figures[-1]) > 0


def test_per_call_benchmark_prints_microseconds_per_kind_for_both_rpcs() -> None:
    lines = run("per_call.py", "--calls", "40", "--batch", "20")
    for rpc in ("Authenticate", "Authorize"):
        rows = table(lines, f"{rpc}, server-side Python work per call")
        assert NOOP in rows
        assert {name.split()[0] for name in rows if name != NOOP} == KINDS
        for per_call, _extra in rows.values():
            assert finite(per_call) > 0


def test_jwt_verify_benchmark_prints_a_ratio_for_c1_c4_c8() -> None:
    lines = run("jwt_verify.py", "--calls", "20", "--rounds", "1")
    rows = table(lines, "JWT verification without cache")
    assert set(rows) == {
        "C1 external IdP JWT (ES256)",
        "C1 external IdP JWT (RS256)",
        "C4 tenant JWT (HS256)",
        "C8 Watchword token (ES256)",
    }
    for full, bare, ratio in rows.values():
        assert finite(full) > 0
        assert finite(bare) > 0
        assert finite(ratio) > 0


def test_latency_benchmark_prints_percentiles_and_peak_memory() -> None:
    lines = run("latency.py", "--rates", "50", "--seconds", "0.4")
    rows = table(lines, "Latency at a fixed offered rate")
    assert set(rows) == {
        "no-op (Health/Check)",
        "Authenticate, every kind in turn",
        "Authorize, every kind in turn",
    }
    for offered, _sent, p50, p99, _max, errors in rows.values():
        assert offered == "50"
        assert 0 < finite(p50) <= finite(p99)
        assert errors == "0"
    memory = next(line for line in lines if line.startswith("server memory"))
    assert "VmHWM" in memory
