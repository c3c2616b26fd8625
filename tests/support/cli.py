"""`watchword ...` in a fresh process that sees only the WATCHWORD_* settings a test gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

CLI = [sys.executable, "-m", "watchword.cli"]


def clean_env(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its WATCHWORD_* variables, plus `settings`."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("WATCHWORD_")}
    return {**inherited, **settings}


def run_cli(*args: str, settings: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=clean_env(settings), capture_output=True, text=True, timeout=timeout, check=False
    )


def refused_start(settings: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`watchword serve` that must refuse to start: exit code 2 and a message, never a traceback."""
    result = run_cli("serve", settings=settings)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result


def migrate(settings: Mapping[str, str]) -> str:
    """`watchword migrate`, which must succeed; what it printed."""
    done = run_cli("migrate", settings=settings, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout
