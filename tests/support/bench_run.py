"""Running a benchmark script of bench/ briefly from a test, so that it cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def bench_output(script: str, *args: str, timeout: float = 180) -> str:
    """What `bench/<script> args...` printed on stdout; a non-zero exit fails the test."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return result.stdout
