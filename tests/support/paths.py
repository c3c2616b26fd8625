"""Where things are, for tests in any folder under tests/ (so no test counts `.parent`s)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
