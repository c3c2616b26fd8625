"""What the gRPC benchmarks share: a closed-loop rate, rounds in rotated order, and the printed table."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping

Call = Callable[[], Awaitable[object]]
BASELINE = "no-op baseline (Health/Check)"


async def rate(call: Call, calls: int, concurrency: int) -> float:
    """Calls per second with `concurrency` calls always in flight."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def interleaved(
    cases: Mapping[str, Call], calls: int, concurrency: int, rounds: int
) -> list[tuple[str, float]]:
    """Every case `rounds` times, in a rotated order each round, so drift on a shared machine (other
    processes, CPU frequency) does not favour whichever case runs first; the median round is reported."""
    await rate(cases[BASELINE], max(calls // 5, 20), concurrency)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(await rate(cases[name], calls, concurrency))
    return [(name, statistics.median(values)) for name, values in samples.items()]


def print_table(title: str, unit: str, rows: list[tuple[str, float]]) -> None:
    baseline = dict(rows)[BASELINE]
    print(title)
    print(f"{'case':<34} {unit:>10} {'ratio to no-op':>15}")
    for name, value in rows:
        print(f"{name:<34} {value:>10.0f} {value / baseline:>15.2f}")
