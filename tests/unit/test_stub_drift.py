"""The generated Python stubs that ship in `watchword.v1` match the .proto files (E2)."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from packaging.version import Version

from support.lock import generated_grpc_version, locked_version, lower_bound
from support.paths import ROOT

PROTO_DIR = ROOT / "proto"
GENERATED_DIR = ROOT / "server" / "watchword" / "v1"
PROTO_FILES = sorted(PROTO_DIR.glob("watchword/v1/*.proto"))
REGENERATE = (
    ".venv/bin/python -m grpc_tools.protoc -I proto --python_out=server --pyi_out=server "
    "--grpc_python_out=server proto/watchword/v1/*.proto"
)


def _protoc(*args: str) -> None:
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    status = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", *args, *map(str, PROTO_FILES)])
    assert status == 0, "protoc failed on the .proto files"


def _without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc fills in `json_name` (derived from the field name); the shipped descriptors omit it."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(file)
    pending = list(copy.message_type)
    while pending:
        message = pending.pop()
        for field in message.field:
            field.ClearField("json_name")
        pending.extend(message.nested_type)
    return copy


def test_e2_proto_files_exist() -> None:
    assert [p.name for p in PROTO_FILES] == ["admin.proto", "auth.proto", "common.proto"]


@pytest.mark.parametrize("proto", PROTO_FILES, ids=lambda p: p.name)
def test_e2_shipped_descriptors_equal_freshly_compiled_ones(proto: Path, tmp_path: Path) -> None:
    descriptor_set = tmp_path / "set.pb"
    _protoc(f"--descriptor_set_out={descriptor_set}")
    compiled = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    fresh = {f.name: f for f in compiled.file}
    name = f"watchword/v1/{proto.name}"
    module = importlib.import_module(f"watchword.v1.{proto.stem}_pb2")
    shipped = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    assert _without_json_names(shipped) == _without_json_names(fresh[name]), (
        f"{name} changed: regenerate the stubs with `{REGENERATE}`"
    )


@pytest.mark.parametrize("proto", PROTO_FILES, ids=lambda p: p.name)
def test_e2_grpc_stubs_cover_every_service_method(proto: Path) -> None:
    messages = importlib.import_module(f"watchword.v1.{proto.stem}_pb2")
    services = importlib.import_module(f"watchword.v1.{proto.stem}_pb2_grpc")
    for service in messages.DESCRIPTOR.services_by_name.values():
        servicer = getattr(services, f"{service.name}Servicer")
        assert hasattr(services, f"add_{service.name}Servicer_to_server")
        for method in service.methods:
            assert hasattr(servicer, method.name), (
                f"{service.name}.{method.name} missing: regenerate with `{REGENERATE}`"
            )


def test_e2_generated_files_are_what_the_locked_generator_writes(tmp_path: Path) -> None:
    """Byte for byte against the locked grpcio-tools; the runtime grpcio's patch release plays no part."""
    installed_tools = importlib.metadata.version("grpcio-tools")
    assert installed_tools == locked_version("grpcio-tools"), (
        f"grpcio-tools {installed_tools} is installed but requirements/test.lock pins "
        f"{locked_version('grpcio-tools')}: install from the lock (bash .ci/run)"
    )
    _protoc(f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}")
    regenerated = sorted((tmp_path / "watchword" / "v1").iterdir())
    assert regenerated, "protoc generated nothing"
    for path in regenerated:
        assert path.read_text() == (GENERATED_DIR / path.name).read_text(), (
            f"{path.name} is stale: regenerate with `{REGENERATE}`"
        )


def test_e2_generated_stubs_import_with_every_grpcio_the_server_allows() -> None:
    floor = lower_bound(ROOT / "pyproject.toml", "grpcio")
    generated = Version(generated_grpc_version(GENERATED_DIR / "auth_pb2_grpc.py"))
    assert generated <= floor, f"stubs need grpcio>={generated}; pyproject.toml admits grpcio>={floor}"


def _undocumented_fields(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    documented = {
        tuple(location.path)
        for location in file.source_code_info.location
        if location.leading_comments.strip() or location.trailing_comments.strip()
    }
    missing: list[str] = []

    def visit(message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], name: str) -> None:
        for index, field in enumerate(message.field):
            if (*path, 2, index) not in documented:
                missing.append(f"{name}.{field.name}")
        for index, nested in enumerate(message.nested_type):
            visit(nested, (*path, 3, index), f"{name}.{nested.name}")

    for index, message in enumerate(file.message_type):
        visit(message, (4, index), message.name)
    return missing


def test_e2_every_field_of_the_contract_is_documented(tmp_path: Path) -> None:
    descriptor_set = tmp_path / "set.pb"
    _protoc(f"--descriptor_set_out={descriptor_set}", "--include_source_info")
    compiled = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    missing = [f"{file.name}: {field}" for file in compiled.file for field in _undocumented_fields(file)]
    assert not missing, "fields without a comment:\n" + "\n".join(missing)
