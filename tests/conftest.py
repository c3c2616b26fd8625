"""Shared fixtures (a real Watchword server, a real PostgreSQL) and the level marker of every test.

A test's level is its folder: tests/unit/ (in process: no server process, no network, no subprocess),
tests/server/ (the real Watchword server, or our own test servers, on loopback), tests/system/ (the
third-party parts: PostgreSQL, Envoy, node, grpcurl, replicas and workers), tests/fuzz/ (hypothesis
properties on a fixed budget) and tests/bench/ (the benchmarks, run briefly). `pytest -m unit` runs the
quick ones. A unit file's test that needs more says so with its own marker (`@pytest.mark.server`), or
is raised by what it is: a hypothesis property is a fuzz test, one using the `server` fixture a server
test, one using `postgres` a system test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.server import WatchwordProcess

# Older imports (`from support.tenants import make_tenant`, e.g. bench/soak.py) keep working.
from support.tenants import (  # noqa: F401
    API_KEY,
    APPLICATION_SECRET,
    STATIC_TOKEN,
    Tenant,
    create_credential,
    make_tenant,
)

TESTS = Path(__file__).resolve().parent
LEVELS = ("unit", "server", "system", "fuzz", "bench")
LEVEL_OF_FIXTURE = {"postgres": "system", "server": "server"}


def _level(item: pytest.Item) -> str:
    explicit = [mark.name for mark in item.iter_markers() if mark.name in LEVELS]
    if explicit:
        return explicit[0]
    folder = item.path.relative_to(TESTS).parts[0]
    if folder not in LEVELS:
        raise pytest.UsageError(f"{item.nodeid}: a test file belongs in one of tests/{{{','.join(LEVELS)}}}/")
    return _unit_or_what_it_needs(item) if folder == "unit" else folder


def _unit_or_what_it_needs(item: pytest.Item) -> str:
    raised = [LEVEL_OF_FIXTURE[name] for name in item.fixturenames if name in LEVEL_OF_FIXTURE]
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        raised.append("fuzz")  # properties run many examples: quick unit runs leave them to `-m fuzz`
    return max(raised, key=LEVELS.index, default="unit")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """`-m unit` (or any `-m` naming levels joined by `or`) does not even import the folders whose tests
    cannot be selected: a test's level is never below its folder's, so `-m unit` reads tests/unit/ only
    (importing and rewriting every test module cost more than the unit tests themselves)."""
    wanted = _levels_selected(config.getoption("markexpr"))
    if wanted is None or collection_path.parent != TESTS or collection_path.name not in LEVELS:
        return None
    possible = LEVELS[LEVELS.index(collection_path.name) :]
    return True if wanted.isdisjoint(possible) else None


def _levels_selected(expression: str) -> frozenset[str] | None:
    """The levels of a `-m` expression that only names levels joined by `or`; None for any other."""
    words = expression.split()
    names, joins = words[::2], words[1::2]
    if not names or any(join != "or" for join in joins) or not set(names) <= set(LEVELS):
        return None
    return frozenset(names)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its level, so `pytest -m unit` (or server, system, fuzz, bench) selects it."""
    for item in items:
        level = _level(item)
        if not item.get_closest_marker(level):
            item.add_marker(level)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    """One server for the session's integration tests; tests create their own organizations."""
    with WatchwordProcess(tmp_path_factory.mktemp("watchword") / "data") as process:
        yield process


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real PostgreSQL server (Debian's package, installed by .ci/run); fails loudly when missing."""
    from support.postgres import PostgresServer

    with PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server
