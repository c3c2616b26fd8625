"""Read requirements/test.lock, the exact versions every install of the suite uses."""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent.parent
TEST_LOCK = ROOT / "requirements" / "test.lock"
SERVE_LOCK = ROOT / "requirements" / "serve.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def canonical(name: str) -> str:
    """PEP 503 name normalisation: `Grpcio_Tools` and `grpcio-tools` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def pins(lock: Path = TEST_LOCK) -> dict[str, str]:
    return {canonical(name): version for name, version in _PIN.findall(lock.read_text(encoding="utf-8"))}


def locked_version(name: str) -> str:
    return pins()[canonical(name)]


def generated_grpc_version(stub: Path) -> str:
    """The grpcio-tools release that wrote a `*_pb2_grpc.py` file (its GRPC_GENERATED_VERSION line)."""
    return next(
        line.split("'")[1]
        for line in stub.read_text(encoding="utf-8").splitlines()
        if line.startswith("GRPC_GENERATED_VERSION")
    )


def lower_bound(pyproject: Path, package: str) -> Version:
    """The `>=` floor a pyproject.toml gives one of its dependencies."""
    for dependency in tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]:
        requirement = Requirement(dependency)
        if canonical(requirement.name) == canonical(package):
            return min(Version(spec.version) for spec in requirement.specifier if spec.operator == ">=")
    raise AssertionError(f"{package} is not a dependency of {pyproject}")
