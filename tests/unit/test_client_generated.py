"""E2: the client package's generated stubs match proto/, live beside the server's in one process, and the
client never needs the server package."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from packaging.version import Version

import watchword_client
from watchword_client._generated import auth_pb2 as client_auth_pb2

from support.lock import generated_grpc_version, locked_version, lower_bound
from support.paths import ROOT

CLIENT_ROOT = ROOT / "clients" / "python"
GENERATED = CLIENT_ROOT / "src" / "watchword_client" / "_generated"
REGENERATE = ".venv/bin/python clients/python/generate_stubs.py"

sys.path.insert(0, str(CLIENT_ROOT))
import generate_stubs  # noqa: E402  (the development script, not part of the package)


def _compiled(tmp_path: Path) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    import grpc_tools
    from grpc_tools import protoc

    out = tmp_path / "set.pb"
    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = [str(ROOT / "proto" / name) for name in generate_stubs.PROTOS]
    status = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--descriptor_set_out={out}", *protos]
    )
    assert status == 0
    return {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}


def _without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(file)
    pending = list(copy.message_type)
    while pending:
        message = pending.pop()
        for field in message.field:
            field.ClearField("json_name")
        pending.extend(message.nested_type)
    return copy


@pytest.mark.parametrize("stem", ["common", "auth"])
def test_e2_client_descriptors_equal_a_fresh_compile_of_proto(stem: str, tmp_path: Path) -> None:
    fresh = _compiled(tmp_path)[f"watchword/v1/{stem}.proto"]
    module = importlib.import_module(f"watchword_client._generated.{stem}_pb2")
    shipped = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    assert _without_json_names(shipped) == _without_json_names(fresh), f"stale: run `{REGENERATE}`"


def test_e2_client_stubs_are_what_the_script_generates(tmp_path: Path) -> None:
    """The locked grpcio-tools regenerates the shipped files byte for byte; the runtime grpcio's patch
    release plays no part (a newer grpcio on the registry must not turn this red)."""
    installed_tools = importlib.metadata.version("grpcio-tools")
    assert installed_tools == locked_version("grpcio-tools"), (
        f"grpcio-tools {installed_tools} is installed but requirements/test.lock pins "
        f"{locked_version('grpcio-tools')}: install from the lock (bash .ci/run)"
    )
    written = generate_stubs.generate(tmp_path)
    assert {p.name for p in written} == {p.name for p in GENERATED.iterdir() if p.suffix in {".py", ".pyi"}}
    for path in written:
        assert path.read_text() == (GENERATED / path.name).read_text(), (
            f"{path.name} stale: run `{REGENERATE}`"
        )


def test_e2_client_stubs_import_with_every_grpcio_the_client_allows() -> None:
    """Generated code refuses to import under a grpcio older than its generator: the generator's release
    must not be newer than the lowest grpcio clients/python/pyproject.toml admits."""
    floor = lower_bound(CLIENT_ROOT / "pyproject.toml", "grpcio")
    generated = Version(generated_grpc_version(GENERATED / "auth_pb2_grpc.py"))
    assert generated <= floor, f"stubs need grpcio>={generated}; pyproject admits grpcio>={floor}"


def test_e2_client_stubs_never_import_the_server_package() -> None:
    for path in GENERATED.glob("*.py*"):
        assert "from watchword.v1" not in path.read_text(), path.name


@pytest.mark.parametrize(
    "first",
    ["watchword.v1.auth_pb2", "watchword_client._generated.auth_pb2"],
    ids=["server-first", "client-first"],
)
@pytest.mark.server
def test_e2_client_and_server_stubs_load_in_one_process_in_either_order(first: str) -> None:
    """protobuf's default pool accepts the same file twice only when identical: prove both orders work
    and that a message built by one side is the other's (a fresh interpreter per order)."""
    second = (
        "watchword_client._generated.auth_pb2" if first.startswith("watchword.") else "watchword.v1.auth_pb2"
    )
    script = f"""
import importlib
import importlib.metadata
a = importlib.import_module({first!r})
b = importlib.import_module({second!r})
import watchword_client
from watchword.v1 import common_pb2
assert a.DESCRIPTOR.serialized_pb == b.DESCRIPTOR.serialized_pb
request = a.AuthorizeRequest(action="event_type.create")
assert b.AuthorizeRequest.FromString(request.SerializeToString()).action == "event_type.create"
principal = common_pb2.Principal(id="p", kind=common_pb2.CREDENTIAL_KIND_API_KEY)
from watchword_client.convert import principal_from_proto
assert principal_from_proto(principal).kind is watchword_client.CredentialKind.API_KEY
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.server
def test_e2_client_package_imports_without_the_server_package() -> None:
    """Block `watchword` entirely: every client module must still import."""
    script = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "watchword" or name.startswith("watchword."):
            raise ImportError("the server package is blocked: " + name)
sys.meta_path.insert(0, Block())
import watchword_client
for module in pkgutil.walk_packages(watchword_client.__path__, "watchword_client."):
    importlib.import_module(module.name)
assert not [name for name in sys.modules if name == "watchword" or name.startswith("watchword.")]
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_e2_client_distribution_depends_on_no_server_package() -> None:
    project = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "watchword-client"
    names = {dependency.split(">")[0].split("[")[0].strip() for dependency in project["dependencies"]}
    assert names.isdisjoint({"watchword", "sqlmodel", "sqlalchemy", "alembic"}), names
    assert all(">=" in dependency for dependency in project["dependencies"]), "pin lower bounds"
    assert (CLIENT_ROOT / "src" / "watchword_client" / "py.typed").exists()
    assert watchword_client.WatchwordClient.__module__ == "watchword_client.client"
    assert client_auth_pb2.DESCRIPTOR.name == "watchword/v1/auth.proto"
