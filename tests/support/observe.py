"""Reading what a test server reports about itself: audit lines (file or output) and metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Record = dict[str, Any]


def audit_records(lines: Iterable[str]) -> list[Record]:
    """The audit records among `lines` (JSON objects with the audit fields; other lines are skipped)."""
    records = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and {"ts", "rpc", "result", "who", "what"} <= record.keys():
            records.append(record)
    return records


def wait_for_records(
    read: Callable[[], list[Record]], matches: Callable[[Record], bool], count: int = 1, timeout: float = 5.0
) -> list[Record]:
    """Audit records are written by a thread within ~50 ms: poll until `count` of them match."""
    deadline = time.monotonic() + timeout
    while True:
        found = [record for record in read() if matches(record)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def file_records(path: Path) -> Callable[[], list[Record]]:
    return lambda: audit_records(path.read_text().splitlines()) if path.exists() else []


def scrape(port: int) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Samples by metric family name: (sample name, labels, value)."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    response.raise_for_status()
    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = [(s.name, dict(s.labels), s.value) for s in family.samples]
    return families


def sample(families: dict[str, list[tuple[str, dict[str, str], float]]], name: str, **labels: str) -> float:
    """The value of the one sample `name` with exactly these labels (0 when absent)."""
    family = name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
    for sample_name, sample_labels, value in families.get(family, []):
        if sample_name == name and sample_labels == labels:
            return value
    return 0.0
