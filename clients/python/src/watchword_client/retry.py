"""When to retry a call: bounded attempts, exponential backoff with full jitter, never past the deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc

# Both mean "Watchword did not decide": safe to ask again, since every AuthService call is a read or,
# for IssueToken and SignOutbound, harmless to repeat (SignOutbound keeps the caller's message id).
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first call; delays grow from `initial_backoff` by `multiplier` up to
    `max_backoff`, each drawn uniformly from [0, that bound] (full jitter) so that many clients do not
    come back in step. The whole series stays inside the call's deadline."""

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0
    retryable_codes: frozenset[grpc.StatusCode] = RETRYABLE_CODES
    jitter: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff or self.multiplier < 1:
            raise ValueError("need 0 <= initial_backoff <= max_backoff and multiplier >= 1")

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        bound = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return self.jitter.uniform(0, bound)

    def should_retry(self, code: grpc.StatusCode, attempt: int) -> bool:
        return code in self.retryable_codes and attempt < self.max_attempts


NO_RETRY = RetryPolicy(max_attempts=1)
