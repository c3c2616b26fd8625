"""Benchmarks are code that runs in CI, briefly, so they cannot rot. No timing is asserted here."""

from __future__ import annotations

from support.bench_run import bench_output

BASELINE = "no-op baseline (Health/Check)"


def run_benchmark(script: str, *args: str) -> dict[str, str]:
    """The benchmark's rows: case name -> its ratio to the no-op, as printed."""
    lines = bench_output(script, *args, timeout=120).splitlines()
    assert "case" in lines[1]
    return {line[:34].strip(): line.split()[-1] for line in lines[2:]}


def test_authenticate_benchmark_prints_a_ratio_per_credential_kind() -> None:
    rows = run_benchmark("authenticate.py", "--calls", "60", "--concurrency", "4", "--rounds", "1")
    assert rows[BASELINE] == "1.00"
    cases = [name for name in rows if name != BASELINE]
    assert {name.split()[0] for name in cases} == {"C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"}
    for case in cases:
        assert float(rows[case]) > 0


def test_issue_token_benchmark_prints_a_ratio_per_grant() -> None:
    rows = run_benchmark("issue_token.py", "--calls", "30", "--concurrency", "4", "--rounds", "1")
    assert rows[BASELINE] == "1.00"
    assert float(rows["I1 API key exchange"]) > 0
    assert float(rows["I2 client credentials (post)"]) > 0


def test_sign_outbound_benchmark_prints_a_ratio_per_scheme() -> None:
    rows = run_benchmark("sign_outbound.py", "--calls", "30", "--concurrency", "4", "--rounds", "1")
    assert rows[BASELINE] == "1.00"
    for case in ("O1 Bearer", "O5 Standard Webhooks signature", "O3 client credentials (warm cache)"):
        assert float(rows[case]) > 0


def run_lines(script: str, *args: str) -> list[str]:
    return bench_output(script, *args).splitlines()


def test_authorize_benchmark_prints_rate_and_cpu_per_worker_count() -> None:
    lines = run_lines(
        "authorize.py", "--workers", "1", "2", "--calls", "30", "--concurrency", "4", "--rounds", "1"
    )
    for workers in ("1", "2"):
        assert any(line.startswith(f"Authorize, warm cache, {workers} worker process(es)") for line in lines)
    start = lines.index("Authorize by worker processes, median over the credential kinds")
    rows = {line.split()[0]: line.split()[1:] for line in lines[start + 2 : start + 4]}
    assert set(rows) == {"1", "2"}
    for rate, cpu, on_paper in rows.values():
        assert float(rate) > 0
        assert float(cpu) > 0
        assert float(on_paper) > 0
    # Each server prints how its CPU time split over its processes (is the load spread over the workers?).
    shares = [line for line in lines if line.startswith("server CPU by process")]
    assert len(shares) == 2


def test_event_loop_benchmark_prints_both_loops_for_every_path() -> None:
    lines = run_lines(
        "event_loop.py", "--duration", "1", "--connections", "4", "--calls", "40", "--rounds", "1"
    )
    assert lines[0].startswith("Event loop of the Watchword server, asyncio against uvloop")
    rows = {line[:40].strip(): line[40:].split() for line in lines[2:]}
    for path in (
        "Check via Envoy, gRPC ext_authz, C3",
        "Check via Envoy, HTTP ext_authz, C3",
        "no-op Health/Check, gRPC",
        "Authorize C3, gRPC",
        "Authorize C8, gRPC",
    ):
        assert len(rows[path]) == 6, path
        assert all(float(figure) > 0 for figure in rows[path]), path
    for ratio in ("Authorize C3 / no-op", "Authorize C8 / no-op"):
        assert all(float(figure) > 0 for figure in rows[ratio]), ratio
