"""E1/E4 benchmark runs in CI, briefly, so it cannot rot: every case is printed with a rate and its CPU
per request, every ratio the issue targets, and the open-loop latencies. No speed asserted."""

from __future__ import annotations

import math
import subprocess
import sys

from support.paths import ROOT

WIDTH = 40  # the label column
ROWS = [
    "(a) Envoy direct_response, no filter",
    "(b) ext_authz -> Watchword, C3 token",
    "(c) ext_authz -> always-allow server",
    "(d) Envoy jwt_authn, ES256 JWT",
    "(e) ext_authz -> Watchword, C8 ES256",
    "(f) HTTP ext_authz -> Watchword, C3",
    "(g) HTTP ext_authz -> Watchword, C8",
    "(h) HTTP ext_authz -> always-allow",
]
# Cases where an authorization server answers Envoy, so a server CPU per request is printed.
ASKING_A_SERVER = {"(b)", "(c)", "(e)", "(f)", "(g)", "(h)"}
RATIOS = {
    "(b)/(c) Watchword vs always-allow, gRPC": "-",
    "(e)/(d) Watchword C8 gRPC vs jwt_authn": "-",
    "(f)/(b) HTTP vs gRPC front door": ">= 2.0",
    "(f)/(h) Watchword vs always-allow, HTTP": ">= 0.8",
    "(g)/(d) Watchword C8 HTTP vs jwt_authn": ">= 0.5",
}
CPU = "Watchword CPU µs per HTTP check, C3 warm"
LATENCY_ROWS = [ROWS[0], ROWS[1], ROWS[5], ROWS[3]]


def positive(text: str) -> float:
    value = float(text)
    assert math.isfinite(value), text
    assert value > 0, text
    return value


def test_e4_envoy_benchmark_prints_every_case_ratio_and_latency() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "envoy_ext_authz.py"),
            *("--duration", "1", "--connections", "4", "--latency-rate", "100", "--latency-seconds", "0.5"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Envoy in front: wrk -t1 -c4 -d1s")
    start = next(index for index, line in enumerate(lines) if line.startswith("Open loop through Envoy"))
    rows = {line[:WIDTH].strip(): line[WIDTH:].split() for line in lines[2:start]}
    for row in ROWS:
        rate, ratio, server_us, envoy_us = rows[row]
        positive(rate)
        positive(ratio)
        positive(envoy_us)
        assert positive(server_us) if row[:3] in ASKING_A_SERVER else server_us == "-", row
    assert rows[ROWS[0]][1] == "1.00"
    for ratio, target in RATIOS.items():
        measured, *wanted = rows[ratio]
        positive(measured)
        assert " ".join(wanted) == target, ratio
    assert rows[CPU][1:] == ["<=", "120"]
    positive(rows[CPU][0])
    latency = {line[:WIDTH].strip(): line[WIDTH:].split() for line in lines[start + 2 : start + 6]}
    assert list(latency) == LATENCY_ROWS
    for row, (sent, p50, p99, highest, errors, late) in latency.items():
        positive(sent)
        assert float(late) >= 0, row
        assert positive(p50) <= positive(p99) <= positive(highest), row
        assert errors == "0", row
