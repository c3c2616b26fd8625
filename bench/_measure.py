"""What the gRPC benchmarks share: a closed-loop rate, cases paired with the no-op, and the printed table."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

Call = Callable[[], Awaitable[object]]
BASELINE = "no-op baseline (Health/Check)"
# (case, calls/s (median over rounds), ratio to the no-op (median of the rounds' ratios),
#  server CPU µs per call over all rounds, or None when the server's process is not known)
Row = tuple[str, float, float, float | None]


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far, all its threads (gRPC's included), from the scheduler's own
    nanosecond count: unlike wall-clock rates, it hardly moves when other work shares the machine."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # a process that ended meanwhile
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (the worker processes of `watchword serve --workers N`)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                pending.extend(int(child) for child in children)
        except (FileNotFoundError, ProcessLookupError):
            continue  # a process or thread that ended meanwhile
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by `pid` and every process below it (see `cpu_seconds`)."""
    return sum(cpu_seconds(process) for process in process_tree(pid))


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
    cases: Mapping[str, Call], calls: int, concurrency: int, rounds: int, server_pid: int | None = None
) -> list[Row]:
    """Every case `rounds` times, each run between two runs of the no-op: a case's ratio in a round is its
    rate over the mean of the no-op runs just before and just after it, so a machine shared with other
    work (whose load comes and goes within seconds) weighs on both sides of each ratio alike. The order
    of the cases rotates every round; the median over the rounds is reported. With `server_pid`, the
    server's CPU time (its whole process tree: every worker) is counted per case too."""
    baseline = cases[BASELINE]
    await rate(baseline, max(calls // 5, 20), concurrency)  # warm-up
    names = [name for name in cases if name != BASELINE]
    rates: dict[str, list[float]] = {name: [] for name in cases}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, float] = dict.fromkeys(cases, 0.0)

    async def run(name: str) -> float:
        started = tree_cpu_seconds(server_pid) if server_pid is not None else 0.0
        measured = await rate(cases[name], calls, concurrency)
        if server_pid is not None:
            cpu[name] += tree_cpu_seconds(server_pid) - started
        rates[name].append(measured)
        return measured

    for round_number in range(rounds):
        shift = round_number % len(names)
        before = await run(BASELINE)
        for name in names[shift:] + names[:shift]:
            measured = await run(name)
            after = await run(BASELINE)
            ratios[name].append(measured / ((before + after) / 2))
            before = after

    def cpu_per_call(name: str) -> float | None:
        return cpu[name] / (len(rates[name]) * calls) * 1e6 if server_pid is not None else None

    rows: list[Row] = [(BASELINE, statistics.median(rates[BASELINE]), 1.0, cpu_per_call(BASELINE))]
    for name in names:
        rows.append(
            (name, statistics.median(rates[name]), statistics.median(ratios[name]), cpu_per_call(name))
        )
    return rows


def print_table(title: str, unit: str, rows: list[Row]) -> None:
    """With server CPU figures: µs of server CPU per call, and the no-op's over the case's (the share of
    the no-op's calls/s the case would reach if the server's CPU were all that limited it)."""
    print(title)
    with_cpu = all(row[3] is not None for row in rows)
    extra = f" {'server CPU µs':>14} {'CPU ratio':>10}" if with_cpu else ""
    print(f"{'case':<34} {unit:>10} {'ratio to no-op':>15}{extra}")
    baseline_cpu = rows[0][3]
    for name, value, ratio, cpu in rows:
        figures = f" {cpu:>14.1f} {baseline_cpu / cpu:>10.2f}" if cpu is not None and baseline_cpu else ""
        print(f"{name:<34} {value:>10.0f} {ratio:>15.2f}{figures}")
