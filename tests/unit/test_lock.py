"""Reproducible installs: requirements/test.lock holds the exact version of every third-party package, and
every way of installing Watchword (.ci/run, the README's two commands, the Dockerfile) uses it."""

from __future__ import annotations

import importlib.metadata
import tomllib

import pytest
from packaging.requirements import Requirement

from support.lock import ROOT, SERVE_LOCK, TEST_LOCK, canonical, pins

PYPROJECTS = {"server": ROOT / "pyproject.toml", "client": ROOT / "clients" / "python" / "pyproject.toml"}


def _declared(pyproject_key: str) -> list[Requirement]:
    project = tomllib.loads(PYPROJECTS[pyproject_key].read_text())["project"]
    extras = project.get("optional-dependencies", {})
    wanted = [*project["dependencies"], *extras.get("test", []), *extras.get("examples", [])]
    return [Requirement(line) for line in wanted]


@pytest.mark.parametrize("pyproject_key", sorted(PYPROJECTS))
def test_every_declared_dependency_is_locked_within_its_bounds(pyproject_key: str) -> None:
    locked = pins(TEST_LOCK)
    for requirement in _declared(pyproject_key):
        name = canonical(requirement.name)
        assert name in locked, f"{name} is not in requirements/test.lock: run bash requirements/update"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{name}=={locked[name]} is outside {requirement.specifier}"
        )


def test_the_serve_lock_is_the_test_lock_narrowed_to_the_server() -> None:
    serve, full = pins(SERVE_LOCK), pins(TEST_LOCK)
    assert serve, "requirements/serve.lock pins nothing"
    assert {name: full.get(name) for name in serve} == serve, (
        "the two locks disagree: bash requirements/update"
    )
    server = tomllib.loads(PYPROJECTS["server"].read_text())["project"]["dependencies"]
    for requirement in map(Requirement, server):
        assert canonical(requirement.name) in serve, f"{requirement.name} is missing from serve.lock"


def test_every_lock_line_carries_a_hash() -> None:
    for lock in (TEST_LOCK, SERVE_LOCK):
        blocks = lock.read_text().split("\n")
        pinned = [i for i, line in enumerate(blocks) if "==" in line and not line.startswith(("#", " "))]
        for index in pinned:
            assert "--hash=sha256:" in blocks[index + 1], f"{lock.name}: {blocks[index]} has no hash"


def test_the_installed_packages_are_the_locked_versions() -> None:
    """The suite runs on what the lock says, not on whatever the registry served today."""
    drifted = {}
    for name, version in pins(TEST_LOCK).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a platform-specific pin (tzdata on Windows, ...) this machine does not need
        if installed != version:
            drifted[name] = (installed, version)
    assert not drifted, f"installed differs from requirements/test.lock: {drifted}"


@pytest.mark.parametrize(
    ("path", "lock"),
    [
        (".ci/run", "requirements/test.lock"),
        ("README.md", "requirements/serve.lock"),
        ("Dockerfile", "requirements/serve.lock"),
    ],
)
def test_every_install_path_uses_the_lock_with_hashes(path: str, lock: str) -> None:
    text = (ROOT / path).read_text()
    assert f"--require-hashes -r {lock}" in text, f"{path} does not install from {lock}"
    assert "--no-deps" in text, f"{path} lets pip resolve the project's own dependencies afresh"


OTEL_PROTO_LOCK = ROOT / "requirements" / "otel-proto.lock"


def test_the_opentelemetry_proto_overlay_is_the_locked_entry() -> None:
    # xds-protos ships an older copy of opentelemetry-proto's files; the overlay reinstalls the real one.
    assert pins(OTEL_PROTO_LOCK) == {"opentelemetry-proto": pins(TEST_LOCK)["opentelemetry-proto"]}


@pytest.mark.parametrize("path", [".ci/run", "README.md", "Dockerfile", "docs/guides/quick-start.md"])
def test_every_install_path_reinstalls_opentelemetry_proto_last(path: str) -> None:
    text = (ROOT / path).read_text()
    overlay = text.find("--force-reinstall --require-hashes -r")
    assert overlay != -1, f"{path} does not reinstall opentelemetry-proto"
    assert "otel-proto.lock" in text[overlay:], f"{path} does not reinstall requirements/otel-proto.lock"
    assert overlay > text.find("serve.lock" if path != ".ci/run" else "test.lock"), f"{path}: overlay first"


def test_the_installed_opentelemetry_proto_files_are_its_own() -> None:
    # With xds-protos' older files on top, the OTLP exporters fail to import and tracing cannot start.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    assert GrpcExporter.__name__ == HttpExporter.__name__ == "OTLPSpanExporter"
