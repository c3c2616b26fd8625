"""E3: gRPC server reflection under both of its names, `grpc.reflection.v1` (current grpcurl, Postman,
grpc-java and grpc-go clients ask for it first) and the deprecated `grpc.reflection.v1alpha`.

grpcio-reflection (1.85) implements v1alpha only. v1 is the same protocol: the same messages with the same
field numbers, in another package. So one servicer answers both (v1 bytes parse as v1alpha messages and
back), and v1's file descriptor, made from v1alpha's by renaming the package, is registered so that
reflection describes the v1 service like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_METHOD = "ServerReflectionInfo"


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, as v1alpha's descriptor with the package renamed."""
    v1alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(v1alpha)
    # In the text form: the binary one length-prefixes each name.
    renamed = text_format.MessageToString(v1alpha).replace(
        ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    )
    v1 = text_format.Parse(renamed, descriptor_pb2.FileDescriptorProto())
    v1.name, v1.package = V1_FILE, "grpc.reflection.v1"
    v1.options.java_package = "io.grpc.reflection.v1"
    v1.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    v1.options.ClearField("deprecated")
    return v1


def _register_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)  # a later grpcio-reflection may bring its own
    except KeyError:
        pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def enable(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection for `service_names` (and for itself, under both names) on `server`."""
    _register_v1_descriptor()
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {V1_METHOD: v1}),))
