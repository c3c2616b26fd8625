"""Budgets of the fuzz tests (`-m fuzz`): hypothesis profiles "ci" (default) and "long".

    pytest -m fuzz                                     # ci: small fixed budget, a fixed seed per test
    WATCHWORD_FUZZ=long pytest -m fuzz                 # long: 50x the examples, fresh random ones each run

Each fuzz test names its CI budget, `@fuzz(examples=N)`; "long" multiplies it. The profiles are applied
per test (not loaded globally) so the other property tests keep their own settings. Hypothesis prints the
falsifying example and, with `print_blob`, a `@reproduce_failure(...)` line that replays it exactly;
a "long" run that fails also stores the example in `.hypothesis/`, so the next run tries it first.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

PROFILE_ENV = "WATCHWORD_FUZZ"
LONG_FACTOR = 50
# Per example. A parser call takes microseconds; this only trips on real pathologies (quadratic
# regexes, huge loops), not on a busy shared machine's scheduling noise.
CI_DEADLINE = timedelta(milliseconds=200)
# Bounded time still matters in long runs, with room for a loaded machine.
LONG_DEADLINE = timedelta(seconds=2)

# Generating huge values is slow by design. Fuzz tests check their fixtures (the servers) after all
# examples, not between them, so a fixture shared by the examples is intended.
_SUPPRESSED = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=CI_DEADLINE,
    derandomize=True,  # a fixed budget that finds the same things on every CI run
    database=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "long",
    max_examples=100 * LONG_FACTOR,
    deadline=LONG_DEADLINE,
    derandomize=False,  # new examples each run; failures are saved in .hypothesis/ and printed
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)


def profile_name() -> str:
    name = os.environ.get(PROFILE_ENV, "ci") or "ci"
    if name not in ("ci", "long"):
        raise RuntimeError(f"{PROFILE_ENV}={name!r}: use 'ci' (the default) or 'long'")
    return name


def is_long() -> bool:
    return profile_name() == "long"


def fuzz(examples: int, *, timeout_per_call: bool = False) -> settings:
    """The settings of one fuzz test: `examples` in CI, LONG_FACTOR times that in a long run.

    `timeout_per_call=True` drops hypothesis' deadline, for tests that call a server or a store: each call
    then carries its own timeout (a gRPC deadline, a future's), which bounds the code under test without
    counting message generation or a first connection, and does not turn a busy machine into a flake.
    """
    base = settings.get_profile(profile_name())
    budget = examples * LONG_FACTOR if is_long() else examples
    if timeout_per_call:
        return settings(base, max_examples=budget, deadline=None)
    return settings(base, max_examples=budget)
